"""Shared attention maths: the causal mask (with an optional sliding window), used by every
attention kind."""

from __future__ import annotations

import torch
from torch import Tensor


def window_hides_keys(window: int | None, k_len: int) -> bool:
    """Whether a sliding ``window`` hides any of ``k_len`` keys from some query.

    The farthest a query can look back is ``k_len - 1`` positions (the last query to the first
    key), so a window of ``k_len`` or more is plain causal attention. Decided on ints, so the
    caller can keep its fast causal paths without a device sync.
    """
    return window is not None and window < k_len


def causal_mask(q_len: int, k_len: int, device: torch.device | str | None = None, *,
                window: int | None = None) -> Tensor:
    """Boolean ``[q_len, k_len]`` mask, ``True`` where a query may NOT attend.

    Queries are the last ``q_len`` of ``k_len`` positions (a cache holds the earlier ones), so
    query ``i`` sits at position ``p = k_len - q_len + i`` and sees keys ``j <= p``.

    With a sliding ``window`` W it sees only the W most recent keys, itself included:

        attend(p, j)  <=>  p - W < j <= p        (keys p-W+1 .. p)

    the convention of Hugging Face's Mistral / Gemma / Qwen2 (``sliding_window_overlay`` in
    transformers' ``masking_utils.py``: ``kv_idx > q_idx - sliding_window``, and'ed with
    ``kv_idx <= q_idx``). Positions are stream indices, as there (``cache_position``), so the
    rule reads the same for a whole sequence and for new tokens against a cache. ``None`` (or a
    window of ``k_len`` or more) is plain causal attention.
    """
    offset = k_len - q_len
    ones = torch.ones(q_len, k_len, dtype=torch.bool, device=device)
    future = ones.triu(diagonal=offset + 1)          # j - i > offset  <=>  j > p
    if window is None or window >= k_len:            # nothing is older than the window
        return future
    too_old = ones.tril(diagonal=offset - window)    # j - i <= offset - W  <=>  j <= p - W
    return future | too_old


def position_mask(q_positions: Tensor, k_positions: Tensor, window: int | None = None) -> Tensor:
    """Boolean ``[..., Tq, Tk]`` mask, ``True`` where a query may NOT attend, from the positions.

    The same rule as ``causal_mask``, read off the positions themselves instead of assuming the
    queries are the newest keys: with ``d = q_i - k_j``,

        attend(i, j)  <=>  0 <= d < W        (W = window, or no upper bound)

    so it holds when each row of a batch sits at its own positions (``q_positions`` ``[B, Tq]``,
    continuous batching), and a key slot a row has not filled yet (a position past its query)
    is hidden like any future key.
    """
    distance = q_positions[..., :, None] - k_positions[..., None, :]   # d = q_i - k_j
    hidden = distance < 0                                              # the future
    if window is not None:
        hidden = hidden | (distance >= window)                         # older than the window
    return hidden
