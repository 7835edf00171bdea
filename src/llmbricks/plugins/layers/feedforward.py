"""Position-wise feed-forward networks."""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from llmbricks.core.component import Dims, ParamsModel
from llmbricks.core.interfaces import FeedForward
from llmbricks.core.linear import Linear


class GELUFeedForward(FeedForward):
    """Linear -> GELU -> Linear, 4x wide (GPT-2 and the book: tanh GELU; nanoGPT: exact GELU)."""

    name = "gelu"

    class Params(ParamsModel):
        hidden_mult: float = Field(4.0, gt=0.0, le=1024.0, description="hidden width as a multiple of emb_dim")
        bias: bool = Field(True, description="biases on both linear layers")
        approximate: Literal["tanh", "none"] = Field(
            "tanh", description="tanh = GPT-2's approximation (the book, Hugging Face gelu_new); "
            "none = the exact x * Phi(x) (nanoGPT's nn.GELU; faster on CPU)")

    @classmethod
    def check(cls, params: Params, dims: Dims) -> None:
        if cls.hidden_size(params, dims) < 1:
            raise ValueError(f"hidden_mult {params.hidden_mult} x emb_dim {dims.emb_dim} leaves no "
                             "hidden units; raise hidden_mult")

    @staticmethod
    def hidden_size(params: Params, dims: Dims) -> int:
        return int(round(dims.emb_dim * params.hidden_mult))

    def __init__(self, params: Params, dims: Dims) -> None:
        super().__init__(params, dims)
        hidden = self.hidden_size(params, dims)
        self.up = Linear(dims.emb_dim, hidden, bias=params.bias)
        self.down = Linear(hidden, dims.emb_dim, bias=params.bias)

    def residual_projections(self) -> list[nn.Module]:
        return [self.down]

    def forward(self, x: Tensor) -> Tensor:
        # exact: GELU(x) = x * Phi(x) = 0.5 x (1 + erf(x / sqrt(2)))
        # tanh:  GELU(x) ~= 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        return self.down(F.gelu(self.up(x), approximate=self.params.approximate))


class ReLUSquaredFeedForward(GELUFeedForward):
    """Linear -> ReLU^2 -> Linear, 4x wide (So et al. 2021, "Primer"; modded-nanoGPT)."""

    name = "relu2"

    class Params(ParamsModel):
        hidden_mult: float = Field(4.0, gt=0.0, le=1024.0, description="hidden width as a multiple of emb_dim")
        bias: bool = Field(True, description="biases on both linear layers")

    def forward(self, x: Tensor) -> Tensor:
        # ReLU^2(z) = max(z, 0)^2: sparse like ReLU, smooth at 0 like GELU, and cheaper than both
        return self.down(F.relu(self.up(x)).square())


class GatedFeedForward(FeedForward):
    """Gated MLP: down(act(gate(x)) * up(x)), no biases; subclasses choose act.

    SwiGLU and GeGLU differ only in the activation, so the widths, the parameter names (gate,
    up, down) and the maths live here once, and a checkpoint of either shape fits both.
    """

    class Params(ParamsModel):
        hidden_mult: float = Field(8 / 3, gt=0.0, le=1024.0, description="hidden width as a multiple of "
                                   "emb_dim before rounding (8/3 matches a 4x GELU MLP's size)")
        multiple_of: int = Field(64, ge=1, le=1 << 16, description="round the hidden width up to a multiple "
                                 "of this (hardware-friendly sizes)")
        hidden: int | None = Field(None, ge=1, le=1 << 20, description="the hidden width itself "
                                   "(a checkpoint's intermediate_size); set, it replaces hidden_mult "
                                   "and multiple_of")

    @staticmethod
    def hidden_size(params: Params, dims: Dims) -> int:
        if params.hidden is not None:
            return params.hidden
        # hidden = multiple_of * ceil(hidden_mult * D / multiple_of)
        raw = int(params.hidden_mult * dims.emb_dim)
        return params.multiple_of * -(-raw // params.multiple_of)

    @classmethod
    def check(cls, params: Params, dims: Dims) -> None:
        if params.hidden is None and int(params.hidden_mult * dims.emb_dim) < 1:
            raise ValueError(f"hidden_mult {params.hidden_mult} x emb_dim {dims.emb_dim} leaves no "
                             "hidden units; raise hidden_mult")

    def __init__(self, params: Params, dims: Dims) -> None:
        super().__init__(params, dims)
        hidden = self.hidden_size(params, dims)
        self.gate = Linear(dims.emb_dim, hidden, bias=False)
        self.up = Linear(dims.emb_dim, hidden, bias=False)
        self.down = Linear(hidden, dims.emb_dim, bias=False)

    def residual_projections(self) -> list[nn.Module]:
        return [self.down]

    def activation(self, z: Tensor) -> Tensor:
        """The gate's nonlinearity."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        # y = (act(x W_gate) * x W_up) W_down
        return self.down(self.activation(self.gate(x)) * self.up(x))


class SwiGLUFeedForward(GatedFeedForward):
    """Gated MLP: down(silu(gate(x)) * up(x)), no biases (PaLM, Llama)."""

    name = "swiglu"

    def activation(self, z: Tensor) -> Tensor:
        # silu(z) = z * sigmoid(z)
        return F.silu(z)


class GeGLUFeedForward(GatedFeedForward):
    """Gated MLP: down(gelu_tanh(gate(x)) * up(x)), no biases (Gemma)."""

    name = "geglu"

    def activation(self, z: Tensor) -> Tensor:
        # GELU's tanh approximation, Gemma's hidden_activation gelu_pytorch_tanh:
        # gelu(z) ~= 0.5 z (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3)))
        return F.gelu(z, approximate="tanh")
