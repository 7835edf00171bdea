"""Built-in positional encodings."""

from llmbricks.core.hookspecs import hookimpl


@hookimpl
def llmbricks_components():
    from .absolute import AbsolutePositional
    from .none import NoPositional

    return [AbsolutePositional, NoPositional]
