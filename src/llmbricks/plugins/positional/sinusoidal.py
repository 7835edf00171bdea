"""Fixed sinusoidal positions (Vaswani et al. 2017, "Attention Is All You Need").

Each position gets a vector of sines and cosines whose wavelengths form a geometric progression
from ``2 pi`` to ``2 pi * base``; scaled by ``1/sqrt(D)`` (the paper's ratio of position to token
signal), it is added to the token embeddings. Nothing is learned and
nothing is stored: the table is computed for exactly the positions of each forward pass, so the
module has no parameters and no ``state_dict`` entries, and any position (past the context too)
has an encoding.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field
from torch import Tensor

from llmbricks.core.component import ParamsModel
from llmbricks.core.interfaces import PositionalEncoding


def sinusoidal_table(positions: Tensor, dim: int, base: float = 10000.0) -> Tensor:
    """The ``[*positions.shape, dim]`` float32 table of sines (even dims) and cosines (odd dims).

    Computed in float32 whatever the model's dtype, so low-precision models still get distinct
    angles for distant positions.
    """
    # frequency of pair i: w_i = base^(-2i / D), i = 0 .. ceil(D/2) - 1
    two_i = torch.arange(0, dim, 2, device=positions.device, dtype=torch.float32)
    inv_freq = base ** (-two_i / dim)
    angles = positions.to(torch.float32)[..., None] * inv_freq            # p * w_i
    # PE[p, 2i] = sin(p * w_i), PE[p, 2i + 1] = cos(p * w_i): interleave, drop the spare for odd D
    table = torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(-2)
    return table[..., :dim]


class SinusoidalPositional(PositionalEncoding):
    """Fixed sinusoidal positions added to the embeddings (Vaswani et al. 2017); no weights."""

    name = "sinusoidal"
    per_row_positions = True
    #: Defined for every position, so a model accepts sequences longer than its context length
    #: (whether it *generalizes* there is another matter: absolute encodings tend not to).
    extrapolates: ClassVar[bool] = True

    class Params(ParamsModel):
        base: float = Field(10000.0, gt=1.0, description="wavelength base: the longest "
                            "wavelength is 2 pi * base (10000 in the paper)")
        scale: float | None = Field(
            None, gt=0.0, description="multiplies the table before it is added; null = "
            "1/sqrt(emb_dim), the paper's ratio of position to token signal (it multiplies the "
            "embeddings by sqrt(d_model) instead); 1.0 = the raw table")

    def positions_limit(self) -> None:
        """``None``: the closed form gives every position an encoding, there is no table to outgrow."""
        return None

    def embed(self, x: Tensor, positions: Tensor) -> Tensor:
        # x_t + scale * PE[t], scale = 1/sqrt(D) by default. The paper adds PE to sqrt(D) * x_t;
        # dividing both by sqrt(D) keeps its ratio while the token embeddings keep their own scale
        # (a GPT initializes them at std 0.02: the raw table, RMS 1/sqrt(2), would drown them).
        dim = x.shape[-1]
        scale = self.params.scale if self.params.scale is not None else dim ** -0.5
        return x + (scale * sinusoidal_table(positions, dim, self.params.base)).to(x.dtype)
