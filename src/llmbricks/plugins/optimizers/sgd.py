"""Stochastic gradient descent with momentum (Polyak; Nesterov's variant as an option).

    b = mu b + g;  p -= lr (g + mu b if nesterov else b)     (weight decay as L2: g += wd p)

The baseline every optimizer paper compares with; torch.optim.SGD computes it.
"""

from __future__ import annotations

import torch
from pydantic import Field, model_validator
from torch import nn

from llmbricks.core.component import ParamsModel
from llmbricks.core.interfaces import Optimizer
from llmbricks.core.train.optim import param_groups, scaled


class SGDOptimizer(Optimizer):
    """SGD with momentum (and Nesterov), weight decay on matrices only."""

    name = "sgd"
    state_per_parameter = 1.0  # the momentum buffer

    class Params(ParamsModel):
        momentum: float = Field(0.9, ge=0.0, lt=1.0, description="mu: the running sum's decay")
        nesterov: bool = Field(False, description="step along g + mu b (Nesterov) instead of b")

        @model_validator(mode="after")
        def _nesterov_needs_momentum(self) -> SGDOptimizer.Params:
            if self.nesterov and self.momentum == 0:
                raise ValueError("nesterov needs momentum > 0")
            return self

    def create(self, model: nn.Module, *, lr: float, weight_decay: float,
               betas: tuple[float, float], decay_embeddings: bool, device: torch.device,
               lr_scales: dict[str, float] | None = None) -> torch.optim.Optimizer:
        p = self.params
        groups = scaled(param_groups(model, weight_decay, decay_embeddings=decay_embeddings,
                                     lr_scales=lr_scales), lr)
        return torch.optim.SGD(groups, lr=lr, momentum=p.momentum, nesterov=p.nesterov)
