"""AdamW (Loshchilov & Hutter 2019), as every run trained before optimizers were components.

    m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  p -= lr (m_hat / (sqrt(v_hat) + eps) + wd p)

Weight decay falls on matrices only (``core.train.optim.param_groups``); PyTorch's fused kernel
runs it where this torch has one.
"""

from __future__ import annotations

import torch
from torch import nn

from llmbricks.core.component import NoParams
from llmbricks.core.interfaces import Optimizer
from llmbricks.core.train.optim import adamw


class AdamWOptimizer(Optimizer):
    """AdamW with decay on matrices only, fused where available (the default; train.betas)."""

    name = "adamw"
    Params = NoParams

    def create(self, model: nn.Module, *, lr: float, weight_decay: float,
               betas: tuple[float, float], decay_embeddings: bool, device: torch.device,
               lr_scales: dict[str, float] | None = None) -> torch.optim.Optimizer:
        return adamw(model, lr=lr, weight_decay=weight_decay, betas=betas,
                     decay_embeddings=decay_embeddings, device=device, lr_scales=lr_scales)
