"""Built-in model assemblies and presets."""

from llmbricks.core.hookspecs import hookimpl

from .presets import PRESETS


@hookimpl
def llmbricks_components():
    from .gpt import GPT

    return [GPT]


@hookimpl
def llmbricks_presets():
    return PRESETS
