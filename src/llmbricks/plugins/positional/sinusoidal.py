"""Fixed sinusoidal positions (Vaswani et al. 2017, "Attention Is All You Need").

Each position gets a vector of sines and cosines whose wavelengths form a geometric progression
from ``2 pi`` to ``2 pi * base``; it is added to the token embeddings. Nothing is learned and
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
    #: Defined for every position, so a model accepts sequences longer than its context length
    #: (whether it *generalizes* there is another matter: absolute encodings tend not to).
    extrapolates: ClassVar[bool] = True

    class Params(ParamsModel):
        base: float = Field(10000.0, gt=1.0, description="wavelength base: the longest "
                            "wavelength is 2 pi * base (10000 in the paper)")

    def positions_limit(self) -> None:
        """``None``: the closed form gives every position an encoding, there is no table to outgrow."""
        return None

    def embed(self, x: Tensor, positions: Tensor) -> Tensor:
        # x_t + PE[t]
        return x + sinusoidal_table(positions, x.shape[-1], self.params.base).to(x.dtype)
