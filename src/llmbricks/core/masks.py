"""Shared attention maths: the causal mask, used by every attention kind."""

from __future__ import annotations

import torch
from torch import Tensor


def causal_mask(q_len: int, k_len: int, device: torch.device | str | None = None) -> Tensor:
    """Boolean ``[q_len, k_len]`` mask, ``True`` where a query may NOT attend.

    Queries are the last ``q_len`` of ``k_len`` positions (a cache holds the earlier ones), so
    query ``i`` sits at position ``k_len - q_len + i`` and sees keys ``j <= k_len - q_len + i``.
    """
    offset = k_len - q_len
    return torch.ones(q_len, k_len, dtype=torch.bool, device=device).triu(diagonal=offset + 1)
