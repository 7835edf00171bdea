"""Built-in heads."""

from llmbricks.core.hookspecs import hookimpl


@hookimpl
def llmbricks_components():
    from .classification import ClassificationHead
    from .lm import LMHead

    return [LMHead, ClassificationHead]
