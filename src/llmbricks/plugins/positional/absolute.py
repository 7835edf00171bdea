"""Learned absolute positions (GPT-2): a ``[context_length, D]`` table added to the embeddings."""

from __future__ import annotations

from torch import Tensor, nn

from llmbricks.core.component import Dims, NoParams
from llmbricks.core.interfaces import PositionalEncoding


class AbsolutePositional(PositionalEncoding):
    """Learned absolute position embeddings added to the token embeddings (GPT-2, the book)."""

    name = "absolute"
    per_row_positions = True

    def __init__(self, params: NoParams, dims: Dims) -> None:
        super().__init__(params, dims)
        self.table = nn.Embedding(dims.context_length, dims.emb_dim)

    def positions_limit(self) -> int:
        return self.dims.context_length

    def embed(self, x: Tensor, positions: Tensor) -> Tensor:
        return x + self.table(positions)  # x_t + P[t]
