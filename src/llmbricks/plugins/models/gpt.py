"""The GPT assembly: embed -> add position -> N blocks -> final norm -> head (nanoGPT's shape)."""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from llmbricks.core.component import Dims, ParamsModel
from llmbricks.core.interfaces import Head, Model, ModelLayout, ModelParts, residual_projections
from llmbricks.core.kv_cache import KVCache


class GPT(Model):
    """Decoder-only transformer: token embedding, positional, N blocks, final norm, head."""

    name = "gpt"

    class Params(ParamsModel):
        init: Literal["normal", "torch"] = Field(
            "normal", description="normal = N(0, 0.02), residual projections scaled by "
            "1/sqrt(2 n_layers) (GPT-2, nanoGPT); torch = PyTorch's layer defaults (the book)")
        zero_residual: bool = Field(False, description="start every residual projection (attention "
                                    "output, feed-forward down) at zero, so each block begins as "
                                    "the identity (modded-nanoGPT)")

    def __init__(self, params: Params, dims: Dims, parts: ModelParts) -> None:
        super().__init__(params, dims, parts)
        self.embedding = parts.embedding()
        self.positional = parts.positional()
        # Local layers (Gemma) may rotate by their own rope; absolute kinds embed only once.
        self.local_positional = parts.local_positional() if parts.local_positional else None
        self.local_layers = parts.local_layers
        self.dropout = nn.Dropout(dims.dropout)
        self.blocks = nn.ModuleList(parts.block(i) for i in range(dims.n_layers))
        self.norm = parts.norm()
        self.head = parts.head()
        self.head.tie(self.embedding.weight)
        if params.init == "normal":
            self._init_normal()
        if params.zero_residual:  # x + f(x) = x at init: the signal passes every block unchanged
            for module in residual_projections(self):
                nn.init.zeros_(module.weight)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)

    def _init_normal(self) -> None:
        """N(0, 0.02), and N(0, 0.02 / sqrt(2 n_layers)) for the residual projections (GPT-2)."""
        residual_std = 0.02 / math.sqrt(2 * self.dims.n_layers)
        residual = residual_projections(self)  # declared by each attention and feed-forward
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                std = residual_std if module in residual else 0.02
                nn.init.normal_(module.weight, mean=0.0, std=std)
                if isinstance(module, nn.Linear) and module.bias is not None:
                    nn.init.zeros_(module.bias)

    def hidden(self, ids: Tensor, positions: Tensor | None = None,
               cache: KVCache | None = None) -> Tensor:
        t = ids.shape[-1]
        start = cache.length if cache is not None else 0
        if positions is None:
            limit = self.positional.positions_limit()
            if limit is not None and start + t > limit:  # checked on ints: no device sync
                raise ValueError(f"sequence of {start + t} tokens is past the {limit} positions of "
                                 f"positional '{self.positional.name}'; crop the input to the context")
            if cache is not None:  # each row from its own length in a continuous batch's cache
                positions, k_positions = cache.positions(t, ids.device)
            else:
                positions = k_positions = torch.arange(t, device=ids.device)
        else:
            k_positions = positions
            if start:  # cached keys sit at the `start` positions just before the new tokens
                earlier = positions[:1] + torch.arange(-start, 0, device=ids.device)
                k_positions = torch.cat([earlier, positions])
        pos = self.positional.context(positions, k_positions)  # rotations and biases, once
        local_pos = (self.local_positional.context(positions, k_positions)
                     if self.local_positional is not None else pos)
        x = self.dropout(self.positional.embed(self.embedding(ids), positions))
        for i, block in enumerate(self.blocks):
            x = block(x, local_pos if i in self.local_layers else pos,
                      cache.layer(i) if cache is not None else None)
        if cache is not None:
            cache.advance(t)
        return self.norm(x)

    def layout(self) -> ModelLayout:
        return ModelLayout(embedding=self.embedding, blocks=self.blocks, norm=self.norm,
                           head=self.head)

    def positions_limit(self) -> int | None:
        return self.positional.positions_limit()

    def replace_head(self, head: Head) -> None:
        head.tie(self.embedding.weight)
        self.head = head
