"""Built-in heads."""

from llmbricks.core.hookspecs import hookimpl


@hookimpl
def llmbricks_components():
    from .lm import LMHead

    return [LMHead]
