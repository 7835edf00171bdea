"""A key/value cache of independent streams, each in its own slot at its own length.

Continuous batching decodes many requests in one forward pass, each one token further along
its own text: request ``b`` has ``lengths[b]`` tokens cached and its new token sits at position
``lengths[b]``. Each layer keeps ``[slots, H_kv, max_len, head_dim]`` keys and values; slot ``s``
position ``j`` holds the key of stream ``s``'s token ``j``.

A forward pass runs over a contiguous range of slots (``rows(lo, hi)``): the engine keeps its
decoding streams in slots ``0 .. n-1`` (``move`` fills the hole a finished stream leaves), so
the batch is a view of the buffers and nothing is gathered per step. Prompts of different
lengths can share a pass right-padded: ``counts`` says how many tokens of each row are real,
and a row's length advances by that many only. The pass sees keys
``0 .. max(lengths) + T - 1`` of every row; a row's unfilled slots sit at positions past its
query, so the position mask (``core.masks.position_mask``) hides them like any future key.

One row (a prefill chunk, or a lone stream) is presented with plain ``[T]`` positions: the
queries are then the newest keys, and attention takes its ordinary fast paths.

Sliding-window layers keep every position here (``max_len`` slots); their mask applies the window.
"""

from __future__ import annotations

import torch
from torch import Tensor


class SlotKVCache:
    """Keys and values of ``slots`` streams of up to ``max_len`` tokens each, per layer."""

    def __init__(self, n_layers: int, slots: int, n_kv_heads: int, max_len: int, head_dim: int, *,
                 dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> None:
        shape = (slots, n_kv_heads, max_len, head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        self.slots, self.max_len, self.device = slots, max_len, device
        self.lengths = [0] * slots

    @classmethod
    def for_model(cls, model: torch.nn.Module, slots: int, max_len: int) -> SlotKVCache:
        """A cache shaped for ``model`` (its ``dims``), in its weights' dtype and device."""
        dims, weight = model.dims, next(model.parameters())
        return cls(dims.n_layers, slots, dims.n_kv_heads, max_len, dims.head_dim,
                   dtype=weight.dtype, device=weight.device)

    def rows(self, lo: int, hi: int, counts: list[int] | None = None) -> SlotRows:
        """Slots ``lo .. hi-1`` as the cache of one forward pass (``model(ids, cache=...)``).

        ``counts[b]``: how many of row ``b``'s ``T`` tokens are real (right-padded rows); its
        length advances by that many, so the padding's keys are overwritten later.
        """
        if not 0 <= lo < hi <= self.slots:
            raise ValueError(f"slots {lo}..{hi - 1} are not within the cache's {self.slots}")
        if counts is not None and len(counts) != hi - lo:
            raise ValueError(f"counts names {len(counts)} rows, the pass has {hi - lo}")
        return SlotRows(self, lo, hi, counts)

    def clear(self, slot: int) -> None:
        """Forget slot ``slot``'s stream; the next one there writes from position 0."""
        self.lengths[slot] = 0

    def move(self, source: int, target: int) -> None:
        """Put stream ``source`` in slot ``target`` (its cached positions and length)."""
        if source == target:
            return
        n = self.lengths[source]
        for k, v in zip(self.keys, self.values, strict=True):
            k[target, :, :n] = k[source, :, :n]
            v[target, :, :n] = v[source, :, :n]
        self.lengths[target], self.lengths[source] = n, 0

    def swap(self, a: int, b: int) -> None:
        """Exchange the streams of slots ``a`` and ``b``."""
        if a == b:
            return
        n, m = self.lengths[a], self.lengths[b]
        for k, v in zip(self.keys, self.values, strict=True):
            for buffer in (k, v):
                held = buffer[a, :, :n].clone()
                buffer[a, :, :m] = buffer[b, :, :m]
                buffer[b, :, :n] = held
        self.lengths[a], self.lengths[b] = m, n


class SlotRows:
    """A contiguous range of slots as a model's cache for one pass: ``layer(i).update`` writes
    each row's new keys at its own length, ``advance`` moves every row on by ``T``."""

    def __init__(self, pool: SlotKVCache, lo: int, hi: int,
                 counts: list[int] | None = None) -> None:
        self.pool, self.lo, self.hi, self.counts = pool, lo, hi, counts
        self._end = 0  # keys every row reads this pass: max(lengths) + T (set by positions)
        self._write: tuple[Tensor, Tensor] | None = None

    @property
    def length(self) -> int:
        """Positions filled in the longest row (a positional table must reach past them)."""
        return max(self.pool.lengths[self.lo:self.hi])

    def positions(self, t: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """Query positions of ``t`` new tokens per row, and the positions of every key read.

        ``[T]`` for one row; ``[B, T]`` (row ``b`` from ``lengths[b]``) for several. Keys are
        ``0 .. max(lengths) + T - 1`` for every row.
        """
        lengths = self.pool.lengths[self.lo:self.hi]
        if max(lengths) + t > self.pool.max_len:
            raise ValueError(f"slot cache is full: {max(lengths)} cached + {t} new tokens > "
                             f"max_len {self.pool.max_len}")
        steps = torch.arange(t, device=device)
        starts = torch.tensor(lengths, device=device)
        queries = starts[:, None] + steps                                   # [B, T]
        self._end = max(lengths) + t
        self._write = (torch.arange(self.lo, self.hi, device=device)[:, None].expand(-1, t), queries)
        keys = torch.arange(self._end, device=device)
        return (queries[0] if len(lengths) == 1 else queries), keys

    def layer(self, index: int) -> _SlotLayer:
        return _SlotLayer(self, index)

    def advance(self, n_tokens: int) -> None:
        """Every row's length moves on by ``n_tokens``, or by its own count of real tokens."""
        counts = self.counts or [n_tokens] * (self.hi - self.lo)
        for slot, count in zip(range(self.lo, self.hi), counts, strict=True):
            self.pool.lengths[slot] += count


class _SlotLayer:
    """One layer's view of a ``SlotRows`` pass (what attention calls ``cache``)."""

    def __init__(self, rows: SlotRows, index: int) -> None:
        self.rows, self.index = rows, index

    def update(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store ``k, v`` ``[B, H_kv, T, hd]`` at each row's next positions; return every row's
        keys/values ``[B, H_kv, max(lengths) + T, hd]`` (unfilled ones are masked by position)."""
        rows = self.rows
        if rows._write is None:
            raise RuntimeError("SlotRows.positions must be called before a layer's update")
        slots, where = rows._write
        pool = rows.pool
        keys, values = pool.keys[self.index], pool.values[self.index]
        # [S, H, L, hd] seen as [S, L, H, hd]: (slot, position) picks one token's heads.
        keys.transpose(1, 2)[slots, where] = k.transpose(1, 2).to(keys.dtype)
        values.transpose(1, 2)[slots, where] = v.transpose(1, 2).to(values.dtype)
        return keys[rows.lo:rows.hi, :, :rows._end], values[rows.lo:rows.hi, :, :rows._end]
