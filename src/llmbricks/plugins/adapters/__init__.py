"""Built-in adapters."""

from llmbricks.core.hookspecs import hookimpl


@hookimpl
def llmbricks_components():
    from .lora import LoRA

    return [LoRA]
