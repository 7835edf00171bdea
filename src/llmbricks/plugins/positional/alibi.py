"""Attention with Linear Biases (Press et al. 2022, "Train Short, Test Long").

No position is added to the tokens; instead every head penalises a score in proportion to how far
back the key is: ``score[h, i, j] += -m_h * (i - j)``. Each head has a fixed slope ``m_h``, from a
geometric sequence, so some heads look far and some look near. Nothing is learned, and the
linear penalty keeps working on sequences longer than those seen in training.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from llmbricks.core.component import Dims, NoParams
from llmbricks.core.interfaces import PositionalEncoding


def _power_of_two_slopes(n: int) -> list[float]:
    # m_h = (2^(-8/n))^h = 2^(-8h/n), h = 1 .. n: starts at 2^(-8/n), same ratio
    return [2.0 ** (-8.0 * h / n) for h in range(1, n + 1)]


def alibi_slopes(n_heads: int) -> list[float]:
    """The per-head slopes of the paper, for any head count.

    For ``n`` a power of two: the geometric sequence ``2^(-8/n), 2^(-16/n), ..., 2^(-8)``.
    Otherwise (the paper's reference code): the ``2^k`` slopes of the largest power of two
    ``2^k < n``, followed by the first ``n - 2^k`` of every other slope of ``2^(k+1)`` heads
    (its 1st, 3rd, 5th...), which fall between the slopes already taken. For 12 heads:
    ``2^-1 .. 2^-8``, then ``2^-0.5, 2^-1.5, 2^-2.5, 2^-3.5``.
    """
    if n_heads < 1:
        raise ValueError(f"ALiBi needs at least one head, got {n_heads}")
    if n_heads & (n_heads - 1) == 0:
        return _power_of_two_slopes(n_heads)
    lower = 2 ** math.floor(math.log2(n_heads))
    return _power_of_two_slopes(lower) + _power_of_two_slopes(2 * lower)[0::2][: n_heads - lower]


class ALiBiPositional(PositionalEncoding):
    """ALiBi (Press et al. 2022): a fixed per-head linear distance penalty on scores; no weights."""

    name = "alibi"
    per_row_positions = True
    Params = NoParams
    #: The penalty is defined for any distance; the paper's point is that it extrapolates.
    extrapolates: ClassVar[bool] = True

    def __init__(self, params: NoParams, dims: Dims) -> None:
        super().__init__(params, dims)
        self.slopes = alibi_slopes(dims.n_heads)

    def positions_limit(self) -> None:
        """``None``: the bias is a formula of the distance, defined for any length."""
        return None

    def bias(self, q_positions: Tensor, k_positions: Tensor) -> Tensor:
        """``[H, Tq, Tk]`` float32 bias ``-m_h * (q_i - k_j)`` for past keys, 0 for future ones.

        Future keys (negative distance) are clamped to distance 0; the causal mask hides them.
        Query positions ``[B, Tq]`` (each row at its own) give ``[B, H, Tq, Tk]``.
        """
        slopes = torch.tensor(self.slopes, dtype=torch.float32, device=q_positions.device)
        distance = (q_positions[..., :, None] - k_positions[..., None, :]).clamp(min=0)
        # max(i - j, 0), [..., 1, Tq, Tk] against the slopes [H, 1, 1]: -m_h * (i - j)
        return -slopes[:, None, None] * distance.unsqueeze(-3).to(torch.float32)
