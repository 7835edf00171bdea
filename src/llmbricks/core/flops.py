"""Training FLOPs per token of a model: the ``6N + 12 L H Q T`` estimate.

One token's forward pass multiplies it through every weight matrix once (2 FLOPs per weight: a
multiply and an add) and, in each layer's attention, takes its query's dot products with the keys
and its weighted sum of the values (2 x 2 x H x Q FLOPs per key seen). The backward pass costs
twice the forward (the gradients of the inputs and of the weights), so training costs three times
the forward (Kaplan et al. 2020, table 1; PaLM, appendix B; nanoGPT's ``estimate_mfu``)::

    forward  = 2 N + 4 sum_l H Q T_l          per token
    training = 6 N + 12 sum_l H Q T_l         per token (forward + backward)

- ``N`` counts the parameters that take part in a matrix multiply: every parameter except the
  lookup tables (``nn.Embedding`` weights: the token table, a learned position table, a learned
  bias table), which are read, not multiplied. A head tied to the token table multiplies by it,
  so the tied table counts, once. (Norm gains and biases are counted too, as nanoGPT does: they
  are a rounding error.) For GPT-2, ``N`` is nanoGPT's ``get_num_params()``: every parameter but
  the position table.
- ``H Q`` is the layer's query heads times the head width (``n_heads x head_dim``).
- ``T_l`` is the keys one query is counted against: the context length, or the layer's sliding
  window when it is smaller (``Block.kv_window()``). Like nanoGPT, the causal mask is not
  discounted: a query at position ``t`` is counted against ``T`` keys, not ``t``.

Counting uses ``numel`` only, so a model built on the meta device (``build_model(...,
device="meta")``) is estimated without memory or time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from .interfaces import Model


@dataclass(frozen=True)
class FlopsEstimate:
    """The two terms of the estimate, and the FLOPs per token they give."""

    matmul_params: int    # N: parameters multiplied by each token (lookup tables left out)
    attention: int        # sum over layers of n_heads x head_dim x T_l
    context_length: int   # T, the sequence length the attention term was counted at

    @property
    def train_per_token(self) -> int:
        """Forward + backward: ``6 N + 12 sum_l H Q T_l``."""
        return 6 * self.matmul_params + 12 * self.attention

    @property
    def forward_per_token(self) -> int:
        """Forward only (generation, evaluation): ``2 N + 4 sum_l H Q T_l``, a third of training."""
        return 2 * self.matmul_params + 4 * self.attention

    def train_per_step(self, tokens_per_step: int) -> int:
        return self.train_per_token * tokens_per_step

    def to_data(self) -> dict[str, Any]:
        return {"train_per_token": self.train_per_token,
                "forward_per_token": self.forward_per_token,
                "matmul_params": self.matmul_params, "attention": self.attention,
                "context_length": self.context_length}


def matmul_params(model: nn.Module) -> int:
    """``N``: the parameters (each once) minus the ``nn.Embedding`` tables, except a table the
    head's output multiplies by (a tied head)."""
    tables = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    if isinstance(model, Model):
        head_weight = model.layout().head.output_weight()
        if head_weight is not None:
            tables.discard(id(head_weight))  # tied: the logits are a matmul by the table
    return sum(p.numel() for p in model.parameters() if id(p) not in tables)


def layer_windows(model: Model) -> list[int | None]:
    """Each block's sliding window (``None``: every key), one per layer.

    A model that does not name its blocks (no ``layout()``) counts ``n_layers`` full layers, as
    its KV cache does (``Model.new_cache``).
    """
    windows = model._kv_windows()
    return windows if windows is not None else [None] * model.dims.n_layers


def estimate_flops(model: Model, context_length: int | None = None) -> FlopsEstimate:
    """The estimate for sequences of ``context_length`` tokens (default: the model's context)."""
    dims = model.dims
    t = context_length if context_length is not None else dims.context_length
    attention = sum(dims.n_heads * dims.head_dim * (t if w is None else min(w, t))
                    for w in layer_windows(model))
    return FlopsEstimate(matmul_params(model), attention, t)


def train_flops_per_token(model: Model, context_length: int | None = None) -> int:
    """``6 N + 12 sum_l H Q T_l``: FLOPs to train on one token (forward + backward)."""
    return estimate_flops(model, context_length).train_per_token


def forward_flops_per_token(model: Model, context_length: int | None = None) -> int:
    """``2 N + 4 sum_l H Q T_l``: FLOPs of one token's forward pass."""
    return estimate_flops(model, context_length).forward_per_token


def format_flops(value: float) -> str:
    """``855000576`` -> ``855M``, ``1.234e12`` -> ``1.23T``: three significant digits."""
    for exponent, suffix in ((18, "E"), (15, "P"), (12, "T"), (9, "G"), (6, "M"), (3, "K")):
        if abs(value) >= 10 ** exponent * 0.9995:
            scaled = value / 10 ** exponent
            text = f"{scaled:#.3g}".rstrip(".") if scaled < 999.5 else f"{scaled:.0f}"
            return text + suffix
    return f"{value:.3g}"
