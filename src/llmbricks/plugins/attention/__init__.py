"""Built-in attention: the reference ``mha`` and the fused ``sdpa``."""

from llmbricks.core.hookspecs import hookimpl


@hookimpl
def llmbricks_components():
    from .mha import MultiHeadAttention
    from .sdpa import SDPAttention

    return [MultiHeadAttention, SDPAttention]
