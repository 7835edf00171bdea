"""Built-in attention: the reference ``mha`` and the fused ``sdpa``."""

from llmbricks.core.hookspecs import hookimpl


@hookimpl
def llmbricks_components():
    from llmbricks.plugins.attention.mha import MultiHeadAttention
    from llmbricks.plugins.attention.sdpa import SDPAttention

    return [MultiHeadAttention, SDPAttention]
