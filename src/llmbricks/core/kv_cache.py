"""A preallocated key/value cache for incremental decoding.

Keys and values of every layer live in one tensor ``[L, B, H_kv, max_len, head_dim]``. A forward
pass with ``T`` new tokens writes them at ``[length, length + T)`` in each layer, then the model
advances ``length`` once. Positions of the new tokens start at ``length``.
"""

from __future__ import annotations

import torch
from torch import Tensor


class LayerKVCache:
    """One layer's view: ``update`` stores the new keys/values and returns all so far."""

    def __init__(self, owner: KVCache, layer: int) -> None:
        self.owner = owner
        self.layer = layer

    def update(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        start, new = self.owner.length, k.shape[-2]
        end = start + new
        if end > self.owner.max_len:
            raise ValueError(
                f"KV cache is full: {start} cached + {new} new tokens > max_len {self.owner.max_len}"
            )
        self.owner.k[self.layer, :, :, start:end] = k
        self.owner.v[self.layer, :, :, start:end] = v
        return self.owner.k[self.layer, :, :, :end], self.owner.v[self.layer, :, :, :end]


class KVCache:
    """Keys and values of all layers for ``batch_size x max_len`` tokens."""

    def __init__(self, n_layers: int, batch_size: int, n_kv_heads: int, max_len: int,
                 head_dim: int, *, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> None:
        shape = (n_layers, batch_size, n_kv_heads, max_len, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.max_len = max_len
        self.length = 0

    def layer(self, index: int) -> LayerKVCache:
        return LayerKVCache(self, index)

    def advance(self, n_tokens: int) -> None:
        """Mark ``n_tokens`` more positions as filled (once per forward pass, after all layers)."""
        self.length += n_tokens

    def truncate(self, length: int) -> None:
        """Forget every position from ``length`` on; the next pass writes there again.

        Nothing is cleared: slots past ``length`` are never read (attention sees ``[0, length +
        T)`` only) and the next ``update`` overwrites them.
        """
        if not 0 <= length <= self.length:
            raise ValueError(f"cannot truncate the KV cache to {length}: it holds {self.length} "
                             "positions (0 <= length <= that)")
        self.length = length

    def reset(self) -> None:
        self.length = 0
