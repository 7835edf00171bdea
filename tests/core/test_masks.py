"""The shared causal mask, with and without a sliding window, against its rule written out."""

from __future__ import annotations

import pytest
import torch

from llmbricks.core.masks import causal_mask, window_hides_keys


def hidden_by_rule(q_len: int, k_len: int, window: int | None) -> torch.Tensor:
    """``True`` unless ``p - W < j <= p``, query ``i`` at ``p = k_len - q_len + i``: one by one."""
    rows = []
    for i in range(q_len):
        p = k_len - q_len + i
        rows.append([not (j <= p and (window is None or j > p - window)) for j in range(k_len)])
    return torch.tensor(rows, dtype=torch.bool)


@pytest.mark.parametrize("window", [None, 1, 2, 3, 5, 8, 9, 100])
@pytest.mark.parametrize("q_len,k_len", [(1, 1), (8, 8), (1, 8), (3, 8), (8, 12), (12, 12)])
def test_causal_mask_follows_the_sliding_window_rule(q_len, k_len, window):
    assert torch.equal(causal_mask(q_len, k_len, window=window), hidden_by_rule(q_len, k_len, window))


def test_each_query_sees_exactly_min_window_keys():
    visible = (~causal_mask(12, 12, window=4)).sum(dim=1)
    assert visible.tolist() == [1, 2, 3, 4] + [4] * 8  # itself and the 3 before it


def test_a_window_covering_every_key_is_the_causal_mask():
    assert not window_hides_keys(None, 5) and not window_hides_keys(5, 5)
    assert window_hides_keys(4, 5)
    assert torch.equal(causal_mask(3, 5, window=5), causal_mask(3, 5))
    assert causal_mask(2, 4, device="cpu", window=2).device.type == "cpu"
