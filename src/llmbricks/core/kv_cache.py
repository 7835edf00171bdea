"""A preallocated key/value cache for incremental decoding.

Each layer keeps its keys and values ``[B, H_kv, slots, head_dim]``. A forward pass with ``T``
new tokens hands each layer its new keys/values (``update``), then the model advances ``length``
once. Positions of the new tokens start at ``length``.

A layer with full causal attention keeps every position: ``max_len`` slots. A layer with a
sliding window ``W`` (Mistral, Gemma, the speedrun's local layers) lets the query at position
``p`` see only keys ``p - W < j <= p``, so once a pass is over it needs just the last ``W - 1``
keys: older ones can never be read again. Such a layer keeps those plus room for new tokens
(``W - 1 + max(T, W / 4)`` slots, at least 16 of room) and, when the room is used up, moves the
last ``W - 1`` keys to the front. The copy costs ``W`` slots every ``W / 4`` tokens, so memory is
bounded by the window and not the generation's length, and ``update`` still returns one
contiguous run of keys ending at the newest, as full layers do. Attention masks are relative to
the newest key (``core.masks.causal_mask``), so they hold on such a run unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

#: A sliding-window layer's room for new tokens: at least this many slots, or a quarter window.
MIN_ROOM = 16


class LayerKVCache:
    """One layer's keys and values; ``update`` stores the new ones and returns what may be read.

    ``start`` is the absolute position of slot 0: 0 for full layers, and for a windowed layer
    the oldest position it still holds.
    """

    def __init__(self, owner: KVCache, window: int | None) -> None:
        self.owner = owner
        self.window = window
        self.start = 0
        slots = owner.max_len if window is None else min(owner.max_len, window - 1 + _room(window))
        self.k, self.v = self._buffers(slots)

    def _buffers(self, slots: int) -> tuple[Tensor, Tensor]:
        o = self.owner
        shape = (o.batch_size, o.n_kv_heads, slots, o.head_dim)
        return (torch.zeros(shape, dtype=o.dtype, device=o.device),
                torch.zeros(shape, dtype=o.dtype, device=o.device))

    @property
    def slots(self) -> int:
        """How many positions this layer can hold now (the memory it uses)."""
        return self.k.shape[-2]

    def update(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store ``k, v`` ``[B, H_kv, T, hd]`` at the next positions; return the keys/values of
        positions ``[start, length + T)``: every earlier one for a full layer, at least the last
        ``W - 1`` earlier ones for a windowed layer."""
        length, new = self.owner.length, k.shape[-2]
        if length + new > self.owner.max_len:
            raise ValueError(f"KV cache is full: {length} cached + {new} new tokens > max_len "
                             f"{self.owner.max_len}")
        if self.window is not None and length - self.start + new > self.slots:
            self._slide(length, new)
        offset = length - self.start
        end = offset + new
        self.k[:, :, offset:end] = k
        self.v[:, :, offset:end] = v
        return self.k[:, :, :end], self.v[:, :, :end]

    def _slide(self, length: int, new: int) -> None:
        """Keep the last ``W - 1`` positions (all a new query can see) at the front of fresh
        buffers with room for ``new`` tokens and more."""
        assert self.window is not None
        keep = min(self.window - 1, length)
        slots = min(self.owner.max_len, keep + max(new, _room(self.window)))
        k, v = self._buffers(slots)
        held = length - self.start
        k[:, :, :keep] = self.k[:, :, held - keep:held]
        v[:, :, :keep] = self.v[:, :, held - keep:held]
        self.k, self.v, self.start = k, v, length - keep

    def check_truncate(self, length: int) -> None:
        """Refuse a truncation that would need keys this layer has already let go."""
        if self.window is not None and self.start > max(length - self.window + 1, 0):
            raise ValueError(f"cannot truncate the KV cache to {length}: a layer with a "
                             f"{self.window}-token window no longer holds the keys before "
                             f"position {self.start} (truncate within the last pass only)")


class KVCache:
    """Keys and values of all layers for ``batch_size x max_len`` tokens.

    ``windows[i]`` is layer ``i``'s sliding window (``None``: it sees every earlier key); a
    windowed layer holds about its window, not ``max_len``. ``max_len`` bounds the positions
    either way (a learned position table, or the room the caller asked for).
    """

    def __init__(self, n_layers: int, batch_size: int, n_kv_heads: int, max_len: int,
                 head_dim: int, *, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None,
                 windows: Sequence[int | None] | None = None) -> None:
        if windows is not None and len(windows) != n_layers:
            raise ValueError(f"windows names {len(windows)} layers but the cache has {n_layers}")
        self.batch_size, self.n_kv_heads, self.head_dim = batch_size, n_kv_heads, head_dim
        self.max_len, self.dtype, self.device = max_len, dtype, device
        self.length = 0
        self.layers = [LayerKVCache(self, w) for w in (windows or [None] * n_layers)]

    def layer(self, index: int) -> LayerKVCache:
        return self.layers[index]

    def positions(self, t: int, device: torch.device | str | None) -> tuple[Tensor, Tensor]:
        """Positions of ``t`` new tokens (from ``length`` on) and of every key: ``0 .. length + t - 1``.

        The slot cache of continuous batching answers the same question per row
        (``core.slot_cache.SlotRows.positions``), so a model asks its cache either way.
        """
        return (torch.arange(self.length, self.length + t, device=device),
                torch.arange(self.length + t, device=device))

    def advance(self, n_tokens: int) -> None:
        """Mark ``n_tokens`` more positions as filled (once per forward pass, after all layers)."""
        self.length += n_tokens

    def truncate(self, length: int) -> None:
        """Forget every position from ``length`` on; the next pass writes there again.

        Nothing is cleared: slots past ``length`` are never read (attention sees up to
        ``length + T`` only) and the next ``update`` overwrites them. A windowed layer can go back
        within the last pass (it always holds that pass and the window before it), as draft
        verification does.
        """
        if not 0 <= length <= self.length:
            raise ValueError(f"cannot truncate the KV cache to {length}: it holds {self.length} "
                             "positions (0 <= length <= that)")
        for layer in self.layers:
            layer.check_truncate(length)
        self.length = length

    def reset(self) -> None:
        self.length = 0
        for layer in self.layers:
            layer.start = 0

    def slots(self) -> int:
        """Positions held over all layers: the cache's memory in units of one key and value."""
        return sum(layer.slots for layer in self.layers)


def _room(window: int) -> int:
    return max(MIN_ROOM, window // 4)
