"""Built-in model assemblies and presets."""

from llmbricks.core.hookspecs import hookimpl
from llmbricks.plugins.models.presets import PRESETS


@hookimpl
def llmbricks_components():
    from llmbricks.plugins.models.gpt import GPT

    return [GPT]


@hookimpl
def llmbricks_presets():
    return PRESETS
