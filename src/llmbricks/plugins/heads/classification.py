"""The classification head: one vector per sequence, pooled from the hidden states, -> class logits."""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from llmbricks.core.component import Dims, ParamsModel
from llmbricks.core.interfaces import Head


class ClassificationHead(Head):
    """Class logits from one pooled vector: the last token (the book), the last real token, or the mean."""

    name = "classification"
    per_token: ClassVar[bool] = False

    class Params(ParamsModel):
        num_classes: int = Field(2, ge=2, le=1 << 24, description="classes to tell apart (2: spam vs ham)")
        pooling: Literal["last", "last_nonpad", "mean"] = Field(
            "last", description="last = the last position, padding or not (the book); "
            "last_nonpad = each row's last real token; mean = the mean over real tokens")

    def __init__(self, params: Params, dims: Dims) -> None:
        super().__init__(params, dims)
        self.proj = nn.Linear(dims.emb_dim, params.num_classes)  # the book's nn.Linear(768, 2)

    def output_weight(self) -> Tensor:
        return self.proj.weight

    @property
    def num_classes(self) -> int:
        return self.params.num_classes

    @property
    def ignores_padding(self) -> bool:
        """Whether positions past ``lengths`` leave the output unchanged (the conformance kit checks it)."""
        return self.params.pooling != "last"

    def forward(self, hidden: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``hidden`` ``[B, T, D]`` -> logits ``[B, C]``; ``lengths`` ``[B]`` real tokens per row.

        With ``lengths`` None, every position is real (``lengths[b] = T``). With ``h_t`` the hidden
        state at position ``t`` of a row and ``n = lengths[b]``, the pooled vector is

            last:         h_{T-1}                        (the last position, even if padding)
            last_nonpad:  h_{n-1}                        (the last real token)
            mean:         (1/n) sum_{t<n} h_t            (the mean over real tokens)

        and the logits are ``W pooled + b``. With causal attention ``h_{n-1}`` has seen the whole
        text, which is why the last token (not the first) carries the classification.
        """
        pooling = self.params.pooling
        if pooling == "last" or (lengths is None and pooling == "last_nonpad"):
            pooled = hidden[:, -1]
        elif pooling == "last_nonpad":
            rows = torch.arange(hidden.shape[0], device=hidden.device)
            pooled = hidden[rows, lengths.to(hidden.device).long() - 1]
        elif lengths is None:
            pooled = hidden.mean(dim=1)
        else:
            n = lengths.to(hidden.device).long()
            real = torch.arange(hidden.shape[1], device=hidden.device)[None, :] < n[:, None]
            # masked_fill (not a product): padding that is inf/nan cannot leak into the sum
            summed = hidden.masked_fill(~real[..., None], 0.0).sum(dim=1)
            pooled = summed / n.clamp(min=1)[:, None].to(hidden.dtype)
        return self.proj(pooled)
