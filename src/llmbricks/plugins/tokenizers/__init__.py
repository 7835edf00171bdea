"""Built-in tokenizers."""

from llmbricks.core.hookspecs import hookimpl


@hookimpl
def llmbricks_components():
    from .char import CharTokenizer

    return [CharTokenizer]
