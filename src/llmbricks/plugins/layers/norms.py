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
    """Root-mean-square normalization with a learned scale, no centering (Llama, T5).

    ``y = x / sqrt(mean(x^2) + eps) * (offset + weight)``. Gemma stores ``w`` and applies
    ``1 + w`` (``offset: 1``), so its checkpoints load as they are; the weight starts at
    ``1 - offset``, so every norm starts as the plain ``x / rms(x)`` whatever the offset.
    """

    name = "rmsnorm"

    class Params(ParamsModel):
        eps: float = Field(1e-6, gt=0.0, le=1.0, description="added to the mean square for stability")
        offset: float = Field(0.0, ge=0.0, le=1.0, description="scale by offset + weight: 0 = the "
                              "weight itself (Llama); 1 = 1 + weight, the weight stored as a "
                              "difference from 1 (Gemma)")

    def __init__(self, params: Params, dims: Dims) -> None:
        super().__init__(params, dims)
        self.weight = nn.Parameter(torch.full((dims.emb_dim,), 1.0 - params.offset))

    def forward(self, x: Tensor) -> Tensor:
        eps, offset = self.params.eps, self.params.offset
        if not offset:  # the fast path: y = x / sqrt(mean(x^2) + eps) * weight, fused
            return F.rms_norm(x, (x.shape[-1],), self.weight, eps)
        # y = x / sqrt(mean(x^2) + eps) * (offset + weight), all in float32 and rounded once
        # at the end, as Gemma does: in bf16, 1 + w would lose w's low bits before the product.
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
        return (normed * (offset + self.weight.float())).to(x.dtype)
