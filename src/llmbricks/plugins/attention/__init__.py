"""Built-in attention."""

from llmbricks.core.hookspecs import hookimpl


@hookimpl
def llmbricks_components():
    from .mha import MultiHeadAttention

    return [MultiHeadAttention]
