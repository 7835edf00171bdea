"""Fused attention through ``torch.nn.functional.scaled_dot_product_attention``.

The same maths as ``mha`` (and the same parameters), computed by PyTorch's fused kernels
(flash / memory-efficient on GPU, a fused CPU kernel otherwise): the fast default.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from llmbricks.core.interfaces import PositionContext
from llmbricks.core.masks import causal_mask
from llmbricks.plugins.attention.base import ProjectedAttention

_HAS_GQA = "enable_gqa" in (F.scaled_dot_product_attention.__doc__ or "")


class SDPAttention(ProjectedAttention):
    """Fused causal attention (PyTorch SDPA); same weights and maths as mha, much faster."""

    name = "sdpa"

    def attend(self, q: Tensor, k: Tensor, v: Tensor, pos: PositionContext) -> Tensor:
        q_len, k_len = q.shape[-2], k.shape[-2]
        groups = q.shape[1] // k.shape[1]
        extra = {}
        if groups > 1:
            if _HAS_GQA:
                extra["enable_gqa"] = True  # the kernel broadcasts key/value heads itself
            else:
                k = k.repeat_interleave(groups, dim=1)
                v = v.repeat_interleave(groups, dim=1)
        dropout = self.dims.dropout if self.training else 0.0
        if pos.bias is None:
            if q_len == k_len:
                return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True, **extra)
            if q_len == 1:  # one new token sees every cached key: no mask at all
                return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, **extra)
            mask = ~causal_mask(q_len, k_len, device=q.device)  # True = may attend
        else:
            # Relative biases go in as an additive float mask, with -inf above the diagonal.
            future = causal_mask(q_len, k_len, device=q.device)
            mask = pos.bias.to(q.dtype).masked_fill(future, float("-inf"))
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, **extra)


