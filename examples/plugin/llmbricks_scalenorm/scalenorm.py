"""ScaleNorm (Nguyen & Salazar, 2019): one learned scale instead of a per-feature affine."""

from __future__ import annotations

import math

import torch
from pydantic import Field

from llmbricks import Dims, Norm, ParamsModel


class ScaleNorm(Norm):
    """ScaleNorm: y = g * x / max(||x||, eps), with a single learned scalar g (init sqrt(D))."""

    name = "scalenorm"

    class Params(ParamsModel):
        eps: float = Field(1e-5, gt=0.0, description="lower bound of the norm")

    def __init__(self, params: Params, dims: Dims) -> None:
        super().__init__(params, dims)
        self.g = torch.nn.Parameter(torch.tensor(math.sqrt(dims.emb_dim)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.g * x / x.norm(dim=-1, keepdim=True).clamp(min=self.params.eps)
