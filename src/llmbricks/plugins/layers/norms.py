"""Normalization layers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from llmbricks.core.component import Dims, ParamsModel
from llmbricks.core.interfaces import Norm


class LayerNorm(Norm):
    """Layer normalization with a learned scale and shift (the book's, eps 1e-5)."""

    name = "layernorm"

    class Params(ParamsModel):
        eps: float = Field(1e-5, gt=0.0, le=1.0, description="added to the variance for stability")
        bias: bool = Field(True, description="learn a shift as well as a scale")

    def __init__(self, params: Params, dims: Dims) -> None:
        super().__init__(params, dims)
        self.weight = nn.Parameter(torch.ones(dims.emb_dim))
        self.bias = nn.Parameter(torch.zeros(dims.emb_dim)) if params.bias else None

    def forward(self, x: Tensor) -> Tensor:
        # y = (x - mean(x)) / sqrt(var(x) + eps) * weight + bias, with the biased variance;
        # F.layer_norm computes exactly this in one fused kernel.
        return F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, self.params.eps)


class RMSNorm(Norm):
    """Root-mean-square normalization with a learned scale, no centering (Llama, T5)."""

    name = "rmsnorm"

    class Params(ParamsModel):
        eps: float = Field(1e-6, gt=0.0, le=1.0, description="added to the mean square for stability")

    def __init__(self, params: Params, dims: Dims) -> None:
        super().__init__(params, dims)
        self.weight = nn.Parameter(torch.ones(dims.emb_dim))

    def forward(self, x: Tensor) -> Tensor:
        # y = x / sqrt(mean(x^2) + eps) * weight
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.params.eps)
