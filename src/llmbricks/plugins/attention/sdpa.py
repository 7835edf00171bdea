"""Fused attention through ``torch.nn.functional.scaled_dot_product_attention``.

The same maths as ``mha`` (and the same parameters), computed by PyTorch's fused kernels
(flash / memory-efficient on GPU, a fused CPU kernel otherwise): the fast default. Without a
sliding window, or with one that covers every key, it takes the same fast paths as always
(``is_causal``, or no mask for one new token); a window that hides keys costs an explicit mask.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from llmbricks.core.interfaces import PositionContext
from llmbricks.core.masks import window_hides_keys
from llmbricks.plugins.attention.base import ProjectedAttention, explicit_attention, score_scale

_HAS_GQA = "enable_gqa" in (F.scaled_dot_product_attention.__doc__ or "")


class SDPAttention(ProjectedAttention):
    """Fused causal attention (PyTorch SDPA); same weights and maths as mha, much faster."""

    name = "sdpa"
    per_row_positions = True

    def attend(self, q: Tensor, k: Tensor, v: Tensor, pos: PositionContext) -> Tensor:
        q_len, k_len = q.shape[-2], k.shape[-2]
        bias = pos.bias
        window = self.params.window
        # Rows at their own positions (continuous batching) keep every key: their mask comes
        # from the positions (pos.hidden_keys), not from where the keys end.
        if window_hides_keys(window, k_len) and not pos.per_row:
            # Query i sits at p = k_len - q_len + i and sees keys p - W < j <= p, so no query sees
            # a key before (k_len - q_len) - W + 1: drop those. One decoded token then reads W
            # keys, not the whole cache. The rule is relative, so it holds on what is left.
            first = max(k_len - q_len - window + 1, 0)
            if first:
                k, v = k[..., first:, :], v[..., first:, :]
                bias = bias[..., first:] if bias is not None else None
                k_len -= first
        elif not pos.per_row:
            window = None  # the window covers every key: plain causal, and its fast paths
        groups = q.shape[1] // k.shape[1]
        extra = {}
        if groups > 1:
            if _HAS_GQA:
                extra["enable_gqa"] = True  # the kernel broadcasts key/value heads itself
            else:
                k = k.repeat_interleave(groups, dim=1)
                v = v.repeat_interleave(groups, dim=1)
        dropout = self.dims.dropout if self.training else 0.0
        scale = score_scale(self.params, q.shape[-1])
        extra["scale"] = scale

        if self.params.softcap is not None:  # no fused kernel caps scores: write them out
            if groups > 1 and "enable_gqa" in extra:
                k = k.repeat_interleave(groups, dim=1)
                v = v.repeat_interleave(groups, dim=1)
            return explicit_attention(q, k, v, bias=bias,
                                      mask=pos.hidden_keys(q_len, k_len, window), scale=scale,
                                      softcap=self.params.softcap,
                                      dropout=lambda w: F.dropout(w, dropout) if dropout else w)
        if bias is None:
            if not pos.per_row and not window_hides_keys(window, k_len):
                if q_len == k_len:
                    return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True,
                                                          **extra)
                if q_len == 1:  # one new token sees every (remaining) key: no mask at all
                    return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, **extra)
            mask = ~pos.hidden_keys(q_len, k_len, window)  # True = may attend
        else:
            # Relative biases go in as an additive float mask, with -inf on the hidden keys.
            hidden = pos.hidden_keys(q_len, k_len, window)
            mask = bias.to(q.dtype).masked_fill(hidden, float("-inf"))
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, **extra)
