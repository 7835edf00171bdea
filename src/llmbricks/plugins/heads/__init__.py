"""Built-in heads."""

from llmbricks.core.hookspecs import hookimpl


@hookimpl
def llmbricks_components():
    from llmbricks.plugins.heads.classification import ClassificationHead
    from llmbricks.plugins.heads.lm import LMHead

    return [LMHead, ClassificationHead]
