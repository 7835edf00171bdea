"""Token embeddings."""

from __future__ import annotations

from torch import Tensor, nn

from llmbricks.core.component import Dims, NoParams
from llmbricks.core.interfaces import Embedding


class TokenEmbedding(Embedding):
    """A learned lookup table of one vector per token id (shareable with the LM head)."""

    name = "token"

    def __init__(self, params: NoParams, dims: Dims) -> None:
        super().__init__(params, dims)
        self.table = nn.Embedding(dims.vocab_size, dims.emb_dim)

    @property
    def weight(self) -> nn.Parameter:
        return self.table.weight

    def forward(self, ids: Tensor) -> Tensor:
        return self.table(ids)
