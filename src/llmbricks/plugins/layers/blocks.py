"""Transformer blocks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import Field
from torch import Tensor, nn

from llmbricks.core.component import Dims, ParamsModel
from llmbricks.core.interfaces import Attention, Block, FeedForward, Norm, PositionContext
from llmbricks.core.kv_cache import LayerKVCache


class GPTBlock(Block):
    """Residual block: x + drop(attn(...)), then x + drop(ff(...)), norms pre, post or both.

    Where the norms sit is the param ``placement`` (``drop``: dropout on the branch):

    - ``pre`` (GPT-2, Llama; the default): each branch reads a normalized input,
      ``x = x + drop(attn(attn_norm(x)))``, then ``x = x + drop(ff(ff_norm(x)))``.
    - ``post`` (OLMo 2, transformers' ``Olmo2DecoderLayer``): each branch's output is normalized
      before it joins the residual, which bounds what a layer adds without normalizing what
      attention reads: ``x = x + drop(attn_post_norm(attn(x)))``, then
      ``x = x + drop(ff_post_norm(ff(x)))``.
    - ``sandwich`` (Gemma 2 and 3, ``Gemma2DecoderLayer``): both,
      ``x = x + drop(attn_post_norm(attn(attn_norm(x))))``, then
      ``x = x + drop(ff_post_norm(ff(ff_norm(x))))``.

    Only the norms a placement uses exist: ``pre`` has the modules and state-dict keys it always
    had (``attn_norm``, ``attn``, ``ff_norm``, ``ff``), ``post`` has no ``attn_norm``/``ff_norm``.
    """

    name = "gpt"

    class Params(ParamsModel):
        placement: Literal["pre", "post", "sandwich"] = Field(
            "pre", description="where the norms sit: pre = norm each branch's input (GPT-2, "
            "Llama); post = norm each branch's output before the residual add (OLMo 2); "
            "sandwich = both (Gemma 2, 3)")

    def __init__(self, params: Params, dims: Dims, *, attention: Callable[[], Attention],
                 norm: Callable[[], Norm], feedforward: Callable[[], FeedForward]) -> None:
        super().__init__(params, dims)
        pre = params.placement in ("pre", "sandwich")
        post = params.placement in ("post", "sandwich")
        # Built in the order they are applied, so a state dict lists them in that order.
        self.attn_norm = norm() if pre else None
        self.attn = attention()
        self.attn_post_norm = norm() if post else None
        self.ff_norm = norm() if pre else None
        self.ff = feedforward()
        self.ff_post_norm = norm() if post else None
        self.dropout = nn.Dropout(dims.dropout)

    def forward(self, x: Tensor, pos: PositionContext, cache: LayerKVCache | None = None) -> Tensor:
        h = x if self.attn_norm is None else self.attn_norm(x)
        h = self.attn(h, pos, cache)
        if self.attn_post_norm is not None:
            h = self.attn_post_norm(h)
        x = x + self.dropout(h)  # x + drop([post](attn([pre](x))))
        h = x if self.ff_norm is None else self.ff_norm(x)
        h = self.ff(h)
        if self.ff_post_norm is not None:
            h = self.ff_post_norm(h)
        return x + self.dropout(h)  # x + drop([post](ff([pre](x))))
