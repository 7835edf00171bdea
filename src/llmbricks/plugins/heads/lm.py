"""The language-model head: hidden states -> logits over the vocabulary."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor, nn

from llmbricks.core.component import Dims, ParamsModel
from llmbricks.core.interfaces import Head
from llmbricks.core.linear import Linear


class LMHead(Head):
    """Linear projection to vocabulary logits, optionally tied to the token embedding."""

    name = "lm"

    class Params(ParamsModel):
        tie_weights: bool = Field(
            True, description="share the token embedding table (GPT-2); false = separate weights")
        softcap: float | None = Field(
            None, gt=0.0, description="soft-cap the logits: softcap * tanh(logits / softcap) "
            "keeps them in (-softcap, softcap) (Gemma 2 and 3: 30); unset = raw logits")

    def __init__(self, params: Params, dims: Dims) -> None:
        super().__init__(params, dims)
        self.proj = Linear(dims.emb_dim, dims.vocab_size, bias=False)

    def tie(self, weight: nn.Parameter) -> None:
        if self.params.tie_weights:
            self.proj.weight = weight  # one tensor, two uses: logits = h E^T

    def output_weight(self) -> Tensor:
        return self.proj.weight

    def forward(self, hidden: Tensor, lengths: Tensor | None = None) -> Tensor:
        logits = self.proj(hidden)  # every position's logits; padding needs no special case
        cap = self.params.softcap
        if cap is not None:
            # logits = cap * tanh(logits / cap): near-linear for small logits, bounded for large
            # ones, so no single logit runs away (Gemma 2 trained with it, so its logits need it)
            logits = cap * torch.tanh(logits / cap)
        return logits
