"""Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"): the sign of a momentum.

    c = b1 m + (1 - b1) g;   p -= lr (sign(c) + wd p);   m = b2 m + (1 - b2) g

One state tensor per parameter instead of AdamW's two, and every coordinate moves by exactly
``lr``: the update's size comes from the learning rate alone, so Lion wants one 3-10x smaller
than AdamW's (and a larger weight decay for the same effect).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from pydantic import Field
from torch import nn

from llmbricks.core.component import ParamsModel
from llmbricks.core.interfaces import Optimizer
from llmbricks.core.train.optim import param_groups, scaled


class Lion(torch.optim.Optimizer):
    """The update rule above, over param groups with ``lr``, ``betas`` and ``weight_decay``."""

    def __init__(self, params: list[dict], *, lr: float, betas: tuple[float, float]) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "weight_decay": 0.0})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            lr, (beta1, beta2), decay = group["lr"], group["betas"], group["weight_decay"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad
                state = self.state[param]
                if not state:
                    state["exp_avg"] = torch.zeros_like(param)
                momentum = state["exp_avg"]
                update = momentum.mul(beta1).add_(grad, alpha=1 - beta1).sign_()  # sign(c)
                if decay:
                    param.mul_(1 - lr * decay)
                param.add_(update, alpha=-lr)
                momentum.mul_(beta2).add_(grad, alpha=1 - beta2)
        return loss


class LionOptimizer(Optimizer):
    """Lion: sign of an interpolated momentum; one state tensor (decay on matrices only)."""

    name = "lion"
    state_per_parameter = 1.0

    class Params(ParamsModel):
        beta1: float = Field(0.9, ge=0.0, lt=1.0, description="weight of the momentum in the step")
        beta2: float = Field(0.99, ge=0.0, lt=1.0, description="decay of the momentum itself")

    def create(self, model: nn.Module, *, lr: float, weight_decay: float,
               betas: tuple[float, float], decay_embeddings: bool, device: torch.device,
               lr_scales: dict[str, float] | None = None) -> torch.optim.Optimizer:
        groups = scaled(param_groups(model, weight_decay, decay_embeddings=decay_embeddings,
                                     lr_scales=lr_scales), lr)
        return Lion(groups, lr=lr, betas=(self.params.beta1, self.params.beta2))
