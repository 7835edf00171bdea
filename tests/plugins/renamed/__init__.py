"""A third-party model family whose internals use none of the built-in attribute names.

Nothing here is called ``blocks``, ``head``, ``proj``, ``out_proj`` or ``down``: the model says
what its parts are through the interfaces (``layout()``, ``residual_projections()``,
``output_weight()``), which is all llmbricks may rely on.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

import llmbricks
from llmbricks.core.component import Dims, NoParams
from llmbricks.core.interfaces import (
    Attention,
    Block,
    FeedForward,
    Head,
    Model,
    ModelLayout,
    ModelParts,
    ModuleComponent,
    PositionContext,
)
from llmbricks.core.kv_cache import KVCache, LayerKVCache


class TwistedAttention(Attention):
    """Causal attention with its own layer names (wq, wk, wv, wo)."""

    name = "twisted"

    def __init__(self, params: NoParams, dims: Dims) -> None:
        super().__init__(params, dims)
        self.wq = nn.Linear(dims.emb_dim, dims.n_heads * dims.head_dim)
        self.wk = nn.Linear(dims.emb_dim, dims.n_heads * dims.head_dim)
        self.wv = nn.Linear(dims.emb_dim, dims.n_heads * dims.head_dim)
        self.wo = nn.Linear(dims.n_heads * dims.head_dim, dims.emb_dim)

    def residual_projections(self) -> list[nn.Module]:
        return [self.wo]

    def forward(self, x: Tensor, pos: PositionContext, cache: LayerKVCache | None = None) -> Tensor:
        b, t, _ = x.shape
        h, hd = self.dims.n_heads, self.dims.head_dim
        q, k, v = (w(x).view(b, t, h, hd).transpose(1, 2) for w in (self.wq, self.wk, self.wv))
        q, k = pos.rotate(q, k)
        if cache is not None:
            k, v = cache.update(k, v)
        scores = q @ k.transpose(-2, -1) / math.sqrt(hd)            # [B, H, T, Tk]
        if pos.bias is not None:
            scores = scores + pos.bias
        future = pos.k[None, :] > pos.q[:, None]                    # key after query: masked
        scores = scores.masked_fill(future, float("-inf"))
        out = F.softmax(scores, dim=-1) @ v
        return self.wo(out.transpose(1, 2).reshape(b, t, h * hd))


class TwistedMLP(FeedForward):
    """A two-layer MLP named fc_in / fc_out."""

    name = "twisted"

    def __init__(self, params: NoParams, dims: Dims) -> None:
        super().__init__(params, dims)
        self.fc_in = nn.Linear(dims.emb_dim, 2 * dims.emb_dim)
        self.fc_out = nn.Linear(2 * dims.emb_dim, dims.emb_dim)

    def residual_projections(self) -> list[nn.Module]:
        return [self.fc_out]

    def forward(self, x: Tensor) -> Tensor:
        return self.fc_out(F.gelu(self.fc_in(x)))


class TwistedBlock(Block):
    """Pre-norm block whose parts are called mix and mlp."""

    name = "twisted"

    def __init__(self, params: NoParams, dims: Dims, *, attention, norm, feedforward) -> None:
        super().__init__(params, dims)
        self.ln_a, self.mix, self.ln_b, self.mlp = norm(), attention(), norm(), feedforward()

    def forward(self, x: Tensor, pos: PositionContext, cache: LayerKVCache | None = None) -> Tensor:
        x = x + self.mix(self.ln_a(x), pos, cache)
        return x + self.mlp(self.ln_b(x))


class TwistedHead(Head):
    """Vocabulary logits from a layer called ``out``, always tied to the embedding."""

    name = "twisted"

    def __init__(self, params: NoParams, dims: Dims) -> None:
        super().__init__(params, dims)
        self.out = nn.Linear(dims.emb_dim, dims.vocab_size, bias=False)

    def tie(self, weight: nn.Parameter) -> None:
        self.out.weight = weight

    def output_weight(self) -> Tensor:
        return self.out.weight

    def forward(self, hidden: Tensor, lengths: Tensor | None = None) -> Tensor:
        return self.out(hidden)


class TwistedModel(Model):
    """A GPT whose parts live under other names (wte, layers, ln_f, lm_out)."""

    name = "twisted"

    def __init__(self, params: NoParams, dims: Dims, parts: ModelParts) -> None:
        super().__init__(params, dims, parts)
        self.wte = parts.embedding()
        self.where = parts.positional()
        self.layers = nn.ModuleList(parts.block(i) for i in range(dims.n_layers))
        self.ln_f = parts.norm()
        self.lm_out = parts.head()
        self.lm_out.tie(self.wte.weight)
        scaled = {id(m) for layer in self.layers for m in _residuals(layer)}
        for module in self.modules():
            if isinstance(module, nn.Linear):
                std = 0.002 if id(module) in scaled else 0.02
                nn.init.normal_(module.weight, std=std)

    def layout(self) -> ModelLayout:
        return ModelLayout(embedding=self.wte, blocks=self.layers, norm=self.ln_f, head=self.lm_out)

    def positions_limit(self) -> int | None:
        return self.where.positions_limit()

    def hidden(self, ids: Tensor, positions: Tensor | None = None,
               cache: KVCache | None = None) -> Tensor:
        t = ids.shape[-1]
        start = cache.length if cache is not None else 0
        q = torch.arange(start, start + t, device=ids.device)
        k = torch.arange(0, start + t, device=ids.device)
        pos = self.where.context(q, k)
        x = self.where.embed(self.wte(ids), q)
        for i, layer in enumerate(self.layers):
            x = layer(x, pos, cache.layer(i) if cache is not None else None)
        if cache is not None:
            cache.advance(t)
        return self.ln_f(x)

    def replace_head(self, head: Head) -> None:
        head.tie(self.wte.weight)
        self.lm_out = head


def _residuals(layer: nn.Module) -> list[nn.Module]:
    return [m for c in layer.children() if isinstance(c, ModuleComponent)
            for m in c.residual_projections()]


@llmbricks.hookimpl
def llmbricks_components():
    return [TwistedAttention, TwistedMLP, TwistedBlock, TwistedHead, TwistedModel]
