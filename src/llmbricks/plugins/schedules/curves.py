"""Learning-rate curves after warmup, each a pure function of the step.

With ``s`` the step (0-based), ``W`` the warmup steps, ``T`` the total and ``p`` the progress
through the part that decays (0 at its first step, 1 at the run's last step):

- constant:      ``lr``
- cosine:        ``min_lr + (lr - min_lr) (1 + cos(pi p)) / 2``, ``p = (s - W) / (T - 1 - W)``
                 (the book's appendix D with its errata fixed: ``core.train.optim.learning_rate``)
- linear:        ``lr + (min_lr - lr) p``
- wsd:           ``lr`` until the last ``decay_fraction`` of the run, then down to ``min_lr`` along
                 ``decay_shape`` (Hu et al. 2024, MiniCPM's warmup-stable-decay): the stable
                 phase's checkpoints can be continued, and the decay added at any budget
- inverse_sqrt:  ``max(min_lr, lr sqrt(max(W, 1) / (s + 1)))`` (Vaswani et al. 2017, T5)

Every curve reaches ``min_lr`` exactly at the last step where it decays to it.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from llmbricks.core.component import NoParams, ParamsModel
from llmbricks.core.interfaces import Schedule
from llmbricks.core.train.optim import learning_rate


def progress(step: int, start: int, total_steps: int) -> float:
    """``p`` from 0 at ``start`` to 1 at the last step (``total_steps - 1``); 0 for a single step."""
    span = total_steps - 1 - start
    return min(1.0, max(0.0, (step - start) / span)) if span > 0 else 0.0


class ConstantSchedule(Schedule):
    """The peak rate after warmup, to the end."""

    name = "constant"
    Params = NoParams

    def after_warmup(self, step: int, *, lr: float, total_steps: int, warmup_steps: int,
                     min_lr: float) -> float:
        return lr


class CosineSchedule(Schedule):
    """Cosine decay from the peak to min_lr at the last step (the book's appendix D, errata fixed)."""

    name = "cosine"
    Params = NoParams

    def after_warmup(self, step: int, *, lr: float, total_steps: int, warmup_steps: int,
                     min_lr: float) -> float:
        return learning_rate(step, lr=lr, total_steps=total_steps, warmup_steps=warmup_steps,
                             min_lr=min_lr, schedule="cosine")


class LinearSchedule(Schedule):
    """Straight down from the peak to min_lr at the last step."""

    name = "linear"
    Params = NoParams

    def after_warmup(self, step: int, *, lr: float, total_steps: int, warmup_steps: int,
                     min_lr: float) -> float:
        return lr + (min_lr - lr) * progress(step, warmup_steps, total_steps)


class WSDSchedule(Schedule):
    """Warmup, stable at the peak, then a short decay to min_lr (MiniCPM's warmup-stable-decay)."""

    name = "wsd"

    class Params(ParamsModel):
        decay_fraction: float = Field(0.2, gt=0.0, le=1.0, description="the share of all steps "
                                      "spent decaying, at the end of the run")
        decay_shape: Literal["linear", "cosine", "sqrt"] = Field(
            "linear", description="linear: lr - (lr - min) p; cosine: (1 + cos(pi p)) / 2; "
            "sqrt: 1 - sqrt(p), which keeps the rate high longer")

    def after_warmup(self, step: int, *, lr: float, total_steps: int, warmup_steps: int,
                     min_lr: float) -> float:
        decay_steps = max(1, round(self.params.decay_fraction * total_steps))
        start = max(warmup_steps, total_steps - decay_steps)
        if step < start:
            return lr
        p = progress(step, start, total_steps)
        shape = self.params.decay_shape
        left = (1.0 - p if shape == "linear" else
                0.5 * (1.0 + math.cos(math.pi * p)) if shape == "cosine" else 1.0 - math.sqrt(p))
        return min_lr + (lr - min_lr) * left


class InverseSqrtSchedule(Schedule):
    """lr * sqrt(warmup / step) after warmup, never below min_lr (the Transformer's, T5's)."""

    name = "inverse_sqrt"
    Params = NoParams

    def after_warmup(self, step: int, *, lr: float, total_steps: int, warmup_steps: int,
                     min_lr: float) -> float:
        return max(min_lr, lr * math.sqrt(max(warmup_steps, 1) / (step + 1)))
