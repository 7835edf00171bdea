"""Sliding windows over a token array: the pretraining dataset and its loader.

- ``SlidingWindowDataset``: inputs and targets shifted by one, windows computed on access from
  the one token array (O(N) memory, never a tensor per window).
- ``make_loader``: sliding windows in order or shuffled, or nanoGPT-style random windows, seeded.
- ``check_split_windows``: a split too short for one window is the user's to fix (exit 2), said
  with the token counts before any model is built.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, SequentialSampler

from ..errors import InputError

_SPLIT_FIX = {
    "training": "use a longer corpus, lower model.context_length, or lower data.val_fraction",
    "validation": "use a longer corpus, lower model.context_length, raise data.val_fraction, or "
                  "set it to 0 to train without validation",
}


def too_short(n_tokens: int, context_length: int, what: str, fix: str) -> InputError:
    """``what has N tokens but one window needs L + 1``: the one line for too little data."""
    return InputError(f"{what} has {n_tokens} tokens but one window needs {context_length + 1} "
                      f"(context_length {context_length} + 1 for the shifted target); {fix}")


def check_split_windows(n_train: int, n_val: int, context_length: int, val_fraction: float) -> None:
    """``InputError`` unless the training split, and the validation split when it is asked for,
    each hold one window (``context_length + 1`` tokens)."""
    total = n_train + n_val
    if n_train <= context_length:
        raise too_short(n_train, context_length, f"the training split (of {total} tokens in all)",
                        _SPLIT_FIX["training"])
    if val_fraction > 0 and n_val <= context_length:
        raise too_short(n_val, context_length, f"the validation split ({val_fraction:g} of "
                        f"{total} tokens)", _SPLIT_FIX["validation"])


class SlidingWindowDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Windows of ``max_length`` tokens every ``stride`` tokens; targets shifted by one.

    Window ``i`` starts at ``i * stride``: ``x = t[s : s + L]``, ``y = t[s + 1 : s + L + 1]``.
    There are ``ceil((N - L) / stride)`` windows, as in the book's ``GPTDatasetV1``. The token
    array is stored once; windows are sliced on access.
    """

    def __init__(self, tokens: np.ndarray, max_length: int, stride: int | None = None) -> None:
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        self.tokens = tokens
        self.max_length = max_length
        self.stride = stride or max_length
        if self.stride < 1:
            raise ValueError(f"stride must be >= 1, got {self.stride}")

    def __len__(self) -> int:
        return max(0, math.ceil((len(self.tokens) - self.max_length) / self.stride))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"window {index} out of range ({len(self)} windows)")
        start = index * self.stride
        window = torch.from_numpy(np.array(self.tokens[start:start + self.max_length + 1],
                                           dtype=np.int64))
        return window[:-1], window[1:]


def make_loader(tokens: np.ndarray, *, max_length: int, batch_size: int,
                stride: int | None = None, sampler: Literal["sliding", "random"] = "sliding",
                shuffle: bool = True, drop_last: bool = True, seed: int = 123,
                num_samples: int | None = None) -> DataLoader:
    """Batches of ``(inputs, targets)``, each ``[batch_size, max_length]`` int64.

    ``sliding``: the windows of ``SlidingWindowDataset``, shuffled or in order. ``random``:
    nanoGPT's ``get_batch``: windows at uniformly random offsets (stride 1, with replacement),
    ``num_samples`` per epoch (default: about as many as non-overlapping windows fit).
    The same seed gives the same batches.
    """
    generator = torch.Generator().manual_seed(seed)
    if sampler == "random":
        dataset = SlidingWindowDataset(tokens, max_length, stride=1)
        if len(dataset) == 0:
            raise too_short(len(tokens), max_length, "the token array", "use more data or a shorter context")
        count = num_samples or max(1, (len(tokens) - max_length) // max_length)
        order = RandomSampler(dataset, replacement=True, num_samples=count, generator=generator)
    else:
        dataset = SlidingWindowDataset(tokens, max_length, stride)
        if len(dataset) == 0:
            raise too_short(len(tokens), max_length, "the token array", "use more data or a shorter context")
        order = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
    return DataLoader(dataset, batch_size=batch_size, sampler=order, drop_last=drop_last)


def first_batches(tokens: np.ndarray, *, max_length: int, batch_size: int, stride: int | None,
                  count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first ``count`` batches of the windows in order (the book prints its loader's first).

    The last batch may be short; fewer than ``count`` come back when the tokens run out.
    """
    loader = make_loader(tokens, max_length=max_length, batch_size=batch_size, stride=stride,
                         shuffle=False, drop_last=False)
    return [batch for batch, _ in zip(loader, range(count), strict=False)]
