"""Transformer blocks."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from llmbricks.core.component import Dims, NoParams
from llmbricks.core.interfaces import Attention, Block, FeedForward, Norm, PositionContext
from llmbricks.core.kv_cache import LayerKVCache


class GPTBlock(Block):
    """Pre-norm residual block: x + drop(attn(norm(x))), then x + drop(ff(norm(x)))."""

    name = "gpt"

    def __init__(self, params: NoParams, dims: Dims, *, attention: Callable[[], Attention],
                 norm: Callable[[], Norm], feedforward: Callable[[], FeedForward]) -> None:
        super().__init__(params, dims)
        self.attn_norm = norm()
        self.attn = attention()
        self.ff_norm = norm()
        self.ff = feedforward()
        self.dropout = nn.Dropout(dims.dropout)

    def forward(self, x: Tensor, pos: PositionContext, cache: LayerKVCache | None = None) -> Tensor:
        x = x + self.dropout(self.attn(self.attn_norm(x), pos, cache))
        return x + self.dropout(self.ff(self.ff_norm(x)))
