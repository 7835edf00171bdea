"""What both attention kinds share: the projections, head splitting, rotation and the cache."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from llmbricks.core.component import Dims, ParamsModel
from llmbricks.core.config import MAX_CONTEXT
from llmbricks.core.interfaces import Attention, PositionContext
from llmbricks.core.kv_cache import LayerKVCache
from llmbricks.core.linear import Linear


class AttentionParams(ParamsModel):
    qkv_bias: bool = Field(False, description="bias on the query/key/value projections")
    n_kv_heads: int | None = Field(
        None, ge=1, le=1 << 14, description="key/value heads for GQA (1 = MQA); unset = n_heads")
    out_bias: bool = Field(True, description="bias on the output projection (GPT-2: yes; Llama, "
                           "Mistral, Qwen: no)")
    window: int | None = Field(
        None, ge=1, le=MAX_CONTEXT, description="sliding window: each query sees the last `window` "
        "keys, itself included (Mistral, Gemma 2-3, Qwen2); unset = full causal attention")
    qk_norm: Literal["none", "head", "full"] = Field(
        "none", description="RMSNorm on the queries and keys before rotation: head = over each "
        "head's dims (Qwen3, Gemma 3), full = over the whole projection (OLMo 2)")
    qk_norm_eps: float = Field(1e-6, gt=0.0, le=1.0, description="the query/key norms' epsilon")
    qk_norm_offset: float = Field(0.0, ge=0.0, le=1.0, description="the query/key norms scale by "
                                  "offset + weight (Gemma 3 stores w and applies 1 + w)")
    scale: float | None = Field(None, gt=0.0, le=1e3, description="scores = q.k * scale; unset = "
                                "1/sqrt(head_dim) (Gemma: query_pre_attn_scalar^-1/2)")
    softcap: float | None = Field(None, gt=0.0, le=1e6, description="scores = c * tanh(scores / c) "
                                  "before the mask (Gemma 2's attn_logit_softcapping); the fused "
                                  "kernel cannot, so sdpa computes such scores explicitly")


def score_scale(params: AttentionParams, head_dim: int) -> float:
    """The factor on ``q . k``: ``params.scale``, else ``1 / sqrt(head_dim)``."""
    return params.scale if params.scale is not None else head_dim ** -0.5


def attention_probabilities(q: Tensor, k: Tensor, *, bias: Tensor | None, mask: Tensor,
                            scale: float, softcap: float | None) -> Tensor:
    """``softmax(cap(q k^T * scale) + bias, hidden keys -inf)``: the weights ``[B, H, Tq, Tk]``.

    ``cap(s) = c * tanh(s / c)`` bounds every score to ``(-c, c)`` (Gemma 2); ``mask`` is True
    where a key is hidden. Key heads are already broadcast to the query heads. The one formula
    of ``explicit_attention`` (mha, sdpa's softcap path) and of ``attention_weights``
    (``llmbricks inspect attention``), so what is drawn is what the reference computes.
    """
    scores = (q @ k.transpose(-2, -1)) * scale                   # QK^T * scale
    if softcap is not None:
        scores = softcap * torch.tanh(scores / softcap)
    if bias is not None:
        scores = scores + bias                                   # ALiBi / T5: + b[h, i, j]
    scores = scores.masked_fill(mask, float("-inf"))
    return torch.softmax(scores, dim=-1)


def explicit_attention(q: Tensor, k: Tensor, v: Tensor, *, bias: Tensor | None, mask: Tensor,
                       scale: float, softcap: float | None,
                       dropout: Callable[[Tensor], Tensor]) -> Tensor:
    """``softmax(cap(q k^T * scale) + bias, hidden keys -inf) v``, written out.

    The weights come from ``attention_probabilities``; key/value heads are already broadcast to
    the query heads. ``dropout`` is applied to the attention weights (``mha`` passes its
    ``nn.Dropout``, where tests read the weights).
    """
    weights = attention_probabilities(q, k, bias=bias, mask=mask, scale=scale, softcap=softcap)
    return dropout(weights) @ v


def repeat_heads(x: Tensor, groups: int) -> Tensor:
    """GQA: each of the ``H_kv`` key/value heads ``[B, H_kv, T, hd]`` repeated for the ``groups``
    query heads it serves -> ``[B, H_kv * groups, T, hd]`` (unchanged at ``groups`` 1)."""
    return x.repeat_interleave(groups, dim=1) if groups > 1 else x


class QKNorm(nn.Module):
    """RMSNorm of queries or keys: ``y = x / sqrt(mean(x^2) + eps) * (offset + w)``.

    Why in attention: it bounds the attention logits (q . k) without touching the residual
    stream, which keeps large models' training stable (Qwen3, OLMo 2, Gemma 3).
    """

    def __init__(self, size: int, eps: float, offset: float) -> None:
        super().__init__()
        self.eps, self.offset = eps, offset
        self.weight = nn.Parameter(torch.full((size,), 1.0 - offset))

    def forward(self, x: Tensor) -> Tensor:
        if not self.offset:
            return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)
        normed = F.rms_norm(x.float(), (x.shape[-1],), None, self.eps)
        return (normed * (self.offset + self.weight.float())).to(x.dtype)


class ProjectedAttention(Attention):
    """Multi-head attention with separate q/k/v projections and an output projection.

    Subclasses implement ``attend(q, k, v, pos)`` on ``[B, H, Tq, hd]`` queries and
    ``[B, H_kv, Tk, hd]`` keys/values. The parameter names are the same for every subclass, so
    their weights are interchangeable.

    With ``window`` W set, the query at position p attends only to keys at positions
    ``p - W < j <= p`` (``core.masks.causal_mask``), in training and against a cache alike; in
    generation the layer's cache keeps only about the window (``kv_window``).
    """

    Params = AttentionParams

    def __init__(self, params: AttentionParams, dims: Dims) -> None:
        super().__init__(params, dims)
        d, hd, kv = dims.emb_dim, dims.head_dim, dims.n_kv_heads
        self.q_proj = Linear(d, dims.n_heads * hd, bias=params.qkv_bias)
        self.k_proj = Linear(d, kv * hd, bias=params.qkv_bias)
        self.v_proj = Linear(d, kv * hd, bias=params.qkv_bias)
        self.out_proj = Linear(dims.n_heads * hd, d, bias=params.out_bias)
        if params.qk_norm != "none":
            per_head = params.qk_norm == "head"
            self.q_norm = QKNorm(hd if per_head else dims.n_heads * hd, params.qk_norm_eps,
                                 params.qk_norm_offset)
            self.k_norm = QKNorm(hd if per_head else kv * hd, params.qk_norm_eps,
                                 params.qk_norm_offset)

    def residual_projections(self) -> list[nn.Module]:
        return [self.out_proj]

    def kv_window(self) -> int | None:
        return self.params.window

    def forward(self, x: Tensor, pos: PositionContext, cache: LayerKVCache | None = None) -> Tensor:
        b, t, _ = x.shape
        h, kv, hd = self.dims.n_heads, self.dims.n_kv_heads, self.dims.head_dim
        q, k = self.queries_and_keys(x, pos)
        v = self.v_proj(x).view(b, t, kv, hd).transpose(1, 2)
        if cache is not None:
            k, v = cache.update(k, v)                           # keys so far: [B, H_kv, Tk, hd]
            pos = pos.last_keys(k.shape[-2])                   # a windowed cache holds fewer
        out = self.attend(q, k, v, pos)                         # [B, H, T, hd]
        return self.out_proj(out.transpose(1, 2).reshape(b, t, h * hd))

    def queries_and_keys(self, x: Tensor, pos: PositionContext) -> tuple[Tensor, Tensor]:
        """Queries ``[B, H, T, hd]`` and keys ``[B, H_kv, T, hd]`` of ``x``: projected, normed
        (``qk_norm``) and rotated to their positions, as attention scores them."""
        b, t, _ = x.shape
        h, kv, hd = self.dims.n_heads, self.dims.n_kv_heads, self.dims.head_dim
        q, k = self.q_proj(x), self.k_proj(x)
        norm = self.params.qk_norm
        if norm == "full":                                      # over all heads at once (OLMo 2)
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = q.view(b, t, h, hd), k.view(b, t, kv, hd)
        if norm == "head":                                      # over each head (Qwen3, Gemma 3)
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = q.transpose(1, 2), k.transpose(1, 2)             # [B, H, T, hd], [B, H_kv, T, hd]
        return pos.rotate(q, k)

    def attention_weights(self, x: Tensor, pos: PositionContext) -> Tensor:
        """``softmax(cap(q k^T * scale) + bias, hidden keys -inf)`` ``[B, H, T, T]`` over ``x``.

        The reference formula (``attention_probabilities``) for every subclass, fused or not,
        without dropout: key heads repeated to the query heads (GQA), the positional bias,
        the sliding window and the softcap all applied as ``forward`` applies them.
        """
        return self.probabilities(*self.queries_and_keys(x, pos), pos)

    def probabilities(self, q: Tensor, k: Tensor, pos: PositionContext) -> Tensor:
        """The weights ``[B, H, Tq, Tk]`` of queries over keys (rotated, ``k`` maybe fewer heads).

        Hidden: future keys (j > p) and, with a window W, keys too old (j <= p - W); read off
        each row's positions when rows sit at their own (continuous batching).
        """
        k = repeat_heads(k, q.shape[1] // k.shape[1])
        mask = pos.hidden_keys(q.shape[-2], k.shape[-2], self.params.window)
        return attention_probabilities(q, k, bias=pos.bias, mask=mask,
                                       scale=score_scale(self.params, q.shape[-1]),
                                       softcap=self.params.softcap)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, pos: PositionContext) -> Tensor:
        raise NotImplementedError
