"""The book's multi-head causal attention, written out: ``softmax(QK^T / sqrt(d) + mask) V``.

The reference implementation and the oracle for fused kinds. Supports grouped-query attention:
``n_kv_heads`` key/value heads each serve ``n_heads / n_kv_heads`` query heads (MQA at 1).
"""

from __future__ import annotations

import math

import torch
from pydantic import Field
from torch import Tensor, nn

from llmbricks.core.component import Dims, ParamsModel
from llmbricks.core.interfaces import Attention, PositionalEncoding
from llmbricks.core.kv_cache import LayerKVCache
from llmbricks.core.masks import causal_mask


class MultiHeadAttention(Attention):
    """Reference multi-head causal attention with an explicit softmax (the book's, plus GQA)."""

    name = "mha"

    class Params(ParamsModel):
        qkv_bias: bool = Field(False, description="bias on the query/key/value projections")
        n_kv_heads: int | None = Field(
            None, ge=1, description="key/value heads for GQA (1 = MQA); unset = n_heads")

    def __init__(self, params: Params, dims: Dims) -> None:
        super().__init__(params, dims)
        d, hd, kv = dims.emb_dim, dims.head_dim, dims.n_kv_heads
        self.q_proj = nn.Linear(d, dims.n_heads * hd, bias=params.qkv_bias)
        self.k_proj = nn.Linear(d, kv * hd, bias=params.qkv_bias)
        self.v_proj = nn.Linear(d, kv * hd, bias=params.qkv_bias)
        self.out_proj = nn.Linear(dims.n_heads * hd, d)
        self.dropout = nn.Dropout(dims.dropout)

    def forward(self, x: Tensor, positional: PositionalEncoding, positions: Tensor,
                cache: LayerKVCache | None = None) -> Tensor:
        b, t, _ = x.shape
        h, kv, hd = self.dims.n_heads, self.dims.n_kv_heads, self.dims.head_dim
        q = self.q_proj(x).view(b, t, h, hd).transpose(1, 2)    # [B, H, T, hd]
        k = self.k_proj(x).view(b, t, kv, hd).transpose(1, 2)   # [B, H_kv, T, hd]
        v = self.v_proj(x).view(b, t, kv, hd).transpose(1, 2)
        k_positions = positions
        if cache is not None:
            start = cache.owner.length
            k_positions = torch.arange(start + t, device=x.device)
        q, k = positional.rotate(q, k, positions)
        if cache is not None:
            k, v = cache.update(k, v)
        if kv != h:  # GQA: each key/value head serves h // kv query heads
            k = k.repeat_interleave(h // kv, dim=1)
            v = v.repeat_interleave(h // kv, dim=1)
        scores = q @ k.transpose(-2, -1) / math.sqrt(hd)          # QK^T / sqrt(d)
        bias = positional.bias(positions, k_positions)
        if bias is not None:
            scores = scores + bias
        mask = causal_mask(t, k.shape[-2], device=x.device)
        scores = scores.masked_fill(mask, float("-inf"))
        weights = self.dropout(torch.softmax(scores, dim=-1))
        out = (weights @ v).transpose(1, 2).reshape(b, t, h * hd)  # merge heads
        return self.out_proj(out)
