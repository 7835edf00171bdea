"""T5's learned relative position bias (Raffel et al. 2020), in its causal (decoder) form.

Each head learns one scalar per *bucket* of query-key distance, added to the attention scores.
Buckets are exact for short distances and logarithmically wider for long ones, so a small table
covers any length: every distance past ``max_distance`` shares the last bucket. One table serves
all layers (as in T5, where the first layer computes the bias and the others reuse it): it lives in
this module, which the model owns once.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from pydantic import Field
from torch import Tensor, nn

from llmbricks.core.component import Dims, ParamsModel
from llmbricks.core.interfaces import PositionalEncoding


def t5_bucket(relative_distance: Tensor, num_buckets: int = 32, max_distance: int = 128) -> Tensor:
    """The causal T5 bucket of each distance ``n = query position - key position``.

    All ``num_buckets`` go to ``n >= 0`` (a causal model never sees the future; negative
    distances share bucket 0). Half are exact, ``n = 0 .. num_buckets/2 - 1``; the other half
    cover ``[num_buckets/2, max_distance)`` with log-spaced edges; farther ones all land in the
    last bucket.
    """
    exact = num_buckets // 2
    if exact < 1 or max_distance <= exact:
        raise ValueError(f"T5 buckets need num_buckets >= 2 and max_distance > num_buckets // 2, "
                         f"got num_buckets={num_buckets}, max_distance={max_distance}")
    n = relative_distance.clamp(min=0)                                      # n = max(i - j, 0)
    # n >= exact: bucket = exact + floor(log(n / exact) / log(max_distance / exact) * (B - exact))
    ratio = n.clamp(min=exact).to(torch.float32) / exact                      # >= 1: log is finite
    scaled = torch.log(ratio) / math.log(max_distance / exact) * (num_buckets - exact)
    far = (exact + scaled.to(torch.long)).clamp(max=num_buckets - 1)          # clamp at the last bucket
    return torch.where(n < exact, n.to(torch.long), far)


class T5RelativeBias(PositionalEncoding):
    """T5 learned relative position bias: one scalar per (distance bucket, head), shared by all layers."""

    name = "t5"
    per_row_positions = True
    #: Distances past ``max_distance`` share the last bucket, so any sequence length works.
    extrapolates: ClassVar[bool] = True

    class Params(ParamsModel):
        num_buckets: int = Field(32, ge=2, le=1 << 16, description="distance buckets per head: half exact, "
                                 "half log-spaced (32 in T5)")
        max_distance: int = Field(128, ge=2, le=1 << 24, description="distances from here on share the last "
                                  "bucket (128 in T5)")

    @classmethod
    def check(cls, params: Params, dims: Dims) -> None:
        """The log-spaced half needs room: ``max_distance`` past the exact buckets."""
        if params.max_distance <= params.num_buckets // 2:
            raise ValueError(
                f"max_distance={params.max_distance} must exceed num_buckets // 2 = "
                f"{params.num_buckets // 2} (the exact buckets); raise it or lower num_buckets")

    def __init__(self, params: Params, dims: Dims) -> None:
        super().__init__(params, dims)
        self.check(params, dims)
        self.table = nn.Embedding(params.num_buckets, dims.n_heads)  # b[bucket, h], learned

    def positions_limit(self) -> None:
        """``None``: every distance has a bucket (far ones share the last)."""
        return None

    def bias(self, q_positions: Tensor, k_positions: Tensor) -> Tensor:
        """``[H, Tq, Tk]`` bias ``b[bucket(q_i - k_j), h]``, computed once per forward pass
        (``[B, H, Tq, Tk]`` for query positions ``[B, Tq]``, each row at its own)."""
        distance = q_positions[..., :, None] - k_positions[..., None, :]   # [Tq, Tk]: i - j
        buckets = t5_bucket(distance, self.params.num_buckets, self.params.max_distance)
        return self.table(buckets).movedim(-1, -3)                          # [Tq, Tk, H] -> [H, Tq, Tk]
