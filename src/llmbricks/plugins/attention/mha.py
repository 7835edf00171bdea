"""The book's multi-head causal attention, written out: ``softmax(QK^T / sqrt(d) + mask) V``.

(``1 / sqrt(d)`` is the default ``scale``; Gemma sets its own, and Gemma 2 soft-caps the scores.)

The reference implementation and the oracle for fused kinds. Supports grouped-query attention:
``n_kv_heads`` key/value heads each serve ``n_heads / n_kv_heads`` query heads (MQA at 1). With
a sliding ``window`` W, the mask also hides keys more than ``W - 1`` positions back: query ``p``
sees keys ``p - W < j <= p``. Written out on the full ``[Tq, Tk]`` scores, no shortcut, so it
stays the oracle for ``sdpa``'s.
"""

from __future__ import annotations

from torch import Tensor, nn

from llmbricks.core.component import Dims
from llmbricks.core.interfaces import PositionContext
from llmbricks.plugins.attention.base import AttentionParams, ProjectedAttention, repeat_heads


class MultiHeadAttention(ProjectedAttention):
    """Reference multi-head causal attention with an explicit softmax (the book's, plus GQA)."""

    name = "mha"
    per_row_positions = True

    def __init__(self, params: AttentionParams, dims: Dims) -> None:
        super().__init__(params, dims)
        self.dropout = nn.Dropout(dims.dropout)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, pos: PositionContext) -> Tensor:
        # softmax(cap(QK^T * scale) + bias, hidden -inf) V: the weights are `probabilities`
        # (shared with `attention_weights`, what `llmbricks inspect attention` draws); GQA: each
        # key/value head serves n_heads / n_kv_heads query heads.
        weights = self.dropout(self.probabilities(q, k, pos))
        return weights @ repeat_heads(v, q.shape[1] // v.shape[1])
