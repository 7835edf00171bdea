"""Built-in embeddings, norms, feed-forwards and blocks."""

from llmbricks.core.hookspecs import hookimpl


@hookimpl
def llmbricks_components():
    from .blocks import GPTBlock
    from .embeddings import TokenEmbedding
    from .feedforward import GELUFeedForward, SwiGLUFeedForward
    from .norms import LayerNorm, RMSNorm

    return [TokenEmbedding, LayerNorm, RMSNorm, GELUFeedForward, SwiGLUFeedForward, GPTBlock]
