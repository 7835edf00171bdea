"""Built-in data sources: text files, the embedded Python docs, named corpora, labeled and
instruction files."""

from llmbricks.core.hookspecs import hookimpl


@hookimpl
def llmbricks_components():
    from llmbricks.plugins.data.instruction import InstructionDataSource, InstructionJsonSource
    from llmbricks.plugins.data.labeled import LabeledTextSource
    from llmbricks.plugins.data.named_text import TheVerdictSource, TinyShakespeareSource
    from llmbricks.plugins.data.python_docs import PythonDocsSource
    from llmbricks.plugins.data.sms_spam import SmsSpamSource
    from llmbricks.plugins.data.text import TextSource

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
