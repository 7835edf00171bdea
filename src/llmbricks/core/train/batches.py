"""Training batches that can restart mid-epoch and split across ranks.

An epoch is an order of items (window start offsets, labeled texts, instruction examples), a
pure function of ``(seed, epoch)``. The order is cut into global batches of
``batch_size x world_size`` items; rank ``r`` takes the ``r``-th slice of each (``ShardedEpochs``,
which every trainer's batches share). So a resumed run asks for ``(epoch, batch)`` and gets exactly the batches the
uninterrupted run would have seen, and two ranks see the same windows one process would.

- ``sliding``: windows every ``stride`` tokens (the book's ``GPTDatasetV1``), shuffled per epoch
  or in order.
- ``random``: nanoGPT's ``get_batch``: offsets drawn uniformly with replacement, about as many
  per epoch as non-overlapping windows fit.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from ..errors import DataError
from .windows import too_short


@dataclass(kw_only=True)
class ShardedEpochs:
    """Epochs as a function of ``(seed, epoch)``, cut into global batches, one slice per rank.

    A subclass (a dataclass with its items and a ``batch_size`` field: items per batch on one
    rank) says how many items an epoch has (``size``) and how a batch is made from some of them
    (``gather``); ``order`` may be overridden. The options below are keyword-only in every
    subclass.
    """

    shuffle: bool = True      # a new seeded order each epoch; False: the items' own order
    drop_last: bool = True    # drop a last partial batch (always, with several ranks)
    seed: int = 123
    rank: int = 0             # this process's slice of each global batch
    world_size: int = 1       # ranks sharing each global batch

    def size(self) -> int:
        """Items per epoch."""
        raise NotImplementedError

    def gather(self, picked: Any) -> Any:
        """One batch from the items ``picked`` (a slice of ``order``)."""
        raise NotImplementedError

    def _require_batches(self, empty: str | None) -> None:
        """Several ranks drop a last partial batch, or DDP would wait forever on the short rank;
        then an epoch without a batch is a ``DataError`` saying ``empty`` (``None``: allowed)."""
        if self.world_size > 1:
            self.drop_last = True
        if empty is not None and len(self) == 0:
            raise DataError(empty)

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        full, rest = divmod(self.size(), self.batch_size * self.world_size)
        return full + (1 if rest and not self.drop_last else 0)

    def generator(self, epoch: int) -> torch.Generator:
        # Modulo 2**64: a seed near the config's bound (2**63 - 1) must not overflow the generator;
        # every seed below ~1.8e13 gives the same numbers as before.
        return torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % 2**64)

    def order(self, epoch: int) -> Sequence[int] | np.ndarray:
        """The items of ``epoch`` in the order batches take them."""
        if not self.shuffle:
            return list(range(self.size()))
        return torch.randperm(self.size(), generator=self.generator(epoch)).tolist()

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Any]:
        """This rank's batches of ``epoch``, from batch number ``start``."""
        order, per_step = self.order(epoch), self.batch_size * self.world_size
        for index in range(start, len(self)):
            shard = order[index * per_step:(index + 1) * per_step]
            yield self.gather(shard[self.rank * self.batch_size:(self.rank + 1) * self.batch_size])


@dataclass
class WindowBatches(ShardedEpochs):
    """Batches of ``(inputs, targets)`` ``[batch_size, length]`` int64 from one token array."""

    tokens: np.ndarray
    length: int
    batch_size: int
    stride: int | None = None
    sampler: Literal["sliding", "random"] = "sliding"

    def __post_init__(self) -> None:
        self.stride = self.stride or self.length
        available = len(self.tokens) - self.length  # offsets s with s + length + 1 <= N
        if available < 1:
            raise too_short(len(self.tokens), self.length, "the token array",
                            "use more data or a shorter context")
        self._starts = np.arange(0, available, self.stride, dtype=np.int64)
        self._require_batches(f"{self.windows} windows of {self.length} tokens make no batch of "
                              f"{self.batch_size * self.world_size}; use a smaller batch_size "
                              "or more data")

    @property
    def windows(self) -> int:
        """Windows per epoch."""
        if self.sampler == "random":
            return max(1, (len(self.tokens) - self.length) // self.length)
        return len(self._starts)

    def size(self) -> int:
        return self.windows

    def order(self, epoch: int) -> np.ndarray:
        """Window start offsets of ``epoch``, in the order batches take them."""
        generator = self.generator(epoch)
        if self.sampler == "random":
            high = len(self.tokens) - self.length
            return torch.randint(0, high, (self.windows,), generator=generator).numpy()
        if not self.shuffle:
            return self._starts
        return self._starts[torch.randperm(len(self._starts), generator=generator).numpy()]

    def gather(self, starts: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """``x = t[s : s + L]``, ``y = t[s + 1 : s + L + 1]`` for each start ``s``."""
        rows = np.asarray(self.tokens[starts[:, None] + np.arange(self.length + 1)], dtype=np.int64)
        window = torch.from_numpy(rows)
        return window[:, :-1], window[:, 1:]

    def spread(self, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``count`` fixed batches of windows spread evenly over the array (for evaluation)."""
        starts = np.arange(0, len(self.tokens) - self.length, self.length, dtype=np.int64)
        wanted = min(len(starts), count * self.batch_size)
        picked = starts[np.unique(np.linspace(0, len(starts) - 1, wanted).round().astype(np.int64))]
        return [self.gather(picked[i:i + self.batch_size])
                for i in range(0, len(picked), self.batch_size)]
