"""Built-in data sources: text files, the embedded Python docs, named corpora, labeled and
instruction files."""

from llmbricks.core.hookspecs import hookimpl


@hookimpl
def llmbricks_components():
    from .instruction import InstructionDataSource, InstructionJsonSource
    from .labeled import LabeledTextSource
    from .named_text import TheVerdictSource, TinyShakespeareSource
    from .python_docs import PythonDocsSource
    from .sms_spam import SmsSpamSource
    from .text import TextSource

    return [
        TextSource,
        PythonDocsSource,
        TinyShakespeareSource,
        TheVerdictSource,
        SmsSpamSource,
        InstructionDataSource,
        InstructionJsonSource,
        LabeledTextSource,
    ]
