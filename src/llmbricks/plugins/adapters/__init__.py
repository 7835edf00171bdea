"""Built-in adapters."""

from llmbricks.core.hookspecs import hookimpl


@hookimpl
def llmbricks_components():
    from llmbricks.plugins.adapters.lora import LoRA

    return [LoRA]
