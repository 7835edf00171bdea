"""Token embeddings."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from llmbricks.core.component import Dims, ParamsModel
from llmbricks.core.interfaces import Embedding


class TokenEmbedding(Embedding):
    """A learned lookup table of one vector per token id (shareable with the LM head)."""

    name = "token"

    class Params(ParamsModel):
        scale: Literal["none", "sqrt_dim"] = Field(
            "none", description="multiply the looked-up vectors: none = as stored (GPT-2, Llama); "
            "sqrt_dim = by sqrt(emb_dim) in the table's dtype (Gemma); a tied head still uses "
            "the unscaled table")

    def __init__(self, params: Params, dims: Dims) -> None:
        super().__init__(params, dims)
        self.table = nn.Embedding(dims.vocab_size, dims.emb_dim)

    @property
    def weight(self) -> nn.Parameter:
        return self.table.weight  # the raw table: a tied head computes logits = h E^T with it

    def forward(self, ids: Tensor) -> Tensor:
        x = self.table(ids)
        if self.params.scale == "sqrt_dim":
            # x = E[ids] * sqrt(D), with sqrt(D) rounded to float32 and then to E's dtype first,
            # as Gemma does (in bf16, sqrt(3072) = 55.43 becomes 55.5): its checkpoints were
            # trained with that rounded factor. A CPU scalar tensor serves every device and
            # traces under torch.compile.
            x = x * torch.tensor(self.dims.emb_dim**0.5, dtype=torch.float32).to(x.dtype)
        return x
