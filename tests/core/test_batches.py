"""Training batches: resumable mid-epoch, sharded across ranks like one process."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llmbricks.core.errors import DataError
from llmbricks.core.train.batches import WindowBatches

TOKENS = np.arange(1000, dtype=np.uint16)


def test_windows_are_shifted_by_one_and_cover_the_epoch_once():
    batches = WindowBatches(TOKENS, 8, 4, seed=1)
    seen = []
    for x, y in batches.epoch(0):
        assert x.shape == (4, 8) and x.dtype == torch.int64
        assert torch.equal(y, x + 1)
        seen += x[:, 0].tolist()
    assert len(batches) == 124 // 4 and len(seen) == len(set(seen)) == 124
    assert all(s % 8 == 0 for s in seen)


def test_an_epoch_is_a_function_of_seed_and_epoch_and_restarts_mid_way():
    batches = WindowBatches(TOKENS, 8, 4, seed=1)
    first = [x for x, _ in batches.epoch(3)]
    assert all(torch.equal(a, b) for a, b in zip(first, [x for x, _ in batches.epoch(3)], strict=False))
    assert not torch.equal(first[0], next(batches.epoch(4))[0])
    assert all(torch.equal(a, b) for a, b in zip(first[5:], [x for x, _ in batches.epoch(3, 5)], strict=False))
    assert not torch.equal(first[0], next(WindowBatches(TOKENS, 8, 4, seed=2).epoch(3))[0])


def test_two_ranks_see_exactly_the_windows_of_one_process_with_the_global_batch():
    whole = WindowBatches(TOKENS, 8, 6, seed=7)
    ranks = [WindowBatches(TOKENS, 8, 3, seed=7, rank=r, world_size=2) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == len(whole)
    for (x, _), (a, _), (b, _) in zip(whole.epoch(0), ranks[0].epoch(0), ranks[1].epoch(0), strict=False):
        assert torch.equal(x, torch.cat([a, b]))


def test_random_sampler_and_unshuffled_order():
    ordered = WindowBatches(TOKENS, 8, 4, shuffle=False)
    assert next(ordered.epoch(0))[0][:, 0].tolist() == [0, 8, 16, 24]
    random = WindowBatches(TOKENS, 8, 4, sampler="random", seed=3)
    starts = np.concatenate([x[:, 0].numpy() for x, _ in random.epoch(0)])
    assert len(starts) == len(random) * 4 and starts.max() <= 1000 - 9
    assert len(set(starts.tolist()) - set(range(0, 1000, 8))) > 0  # not only stride-8 offsets


def test_last_partial_batch_kept_unless_drop_last():
    assert len(WindowBatches(TOKENS, 8, 5, drop_last=True)) == 24
    kept = WindowBatches(TOKENS, 8, 5, drop_last=False)
    assert len(kept) == 25 and list(kept.epoch(0))[-1][0].shape == (4, 8)


def test_evaluation_batches_spread_over_the_array():
    spread = WindowBatches(TOKENS, 10, 4).spread(2)
    assert len(spread) == 2
    starts = torch.cat([x[:, 0] for x, _ in spread]).tolist()
    assert starts[0] == 0 and starts[-1] >= 980 and starts == sorted(set(starts))


def test_too_little_data_is_a_clear_error():
    with pytest.raises(DataError, match="has 8 tokens but one window needs 9"):
        WindowBatches(np.arange(8, dtype=np.uint16), 8, 2)
    with pytest.raises(DataError, match="make no batch of 64"):
        WindowBatches(np.arange(100, dtype=np.uint16), 8, 32, world_size=2)
