"""Built-in embeddings, norms, feed-forwards and blocks."""

from llmbricks.core.hookspecs import hookimpl


@hookimpl
def llmbricks_components():
    from llmbricks.plugins.layers.blocks import GPTBlock
    from llmbricks.plugins.layers.embeddings import TokenEmbedding
    from llmbricks.plugins.layers.feedforward import (
        GeGLUFeedForward,
        GELUFeedForward,
        ReLUSquaredFeedForward,
        SwiGLUFeedForward,
    )
    from llmbricks.plugins.layers.norms import LayerNorm, RMSNorm

    return [TokenEmbedding, LayerNorm, RMSNorm, GELUFeedForward, ReLUSquaredFeedForward,
            SwiGLUFeedForward, GeGLUFeedForward, GPTBlock]
