"""AdamW with decay on matrices only, and the learning-rate schedule (appendix D, errata fixed).

Weight decay shrinks weights toward zero; that regularizes the matrices of linear layers but only
distorts norms' gains, biases and (by default) embedding tables, so those get none.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Literal

import torch
from torch import nn


def param_groups(model: nn.Module, weight_decay: float, *, decay_embeddings: bool = False,
                 lr_scales: dict[str, float] | None = None) -> list[dict]:
    """AdamW's groups: matrices (decayed) and everything else (not decayed).

    A parameter is decayed when it has 2+ dimensions and is not an embedding table (unless
    ``decay_embeddings``). Frozen parameters are left out; a tied tensor is listed once.
    ``lr_scales`` (``{"embedding": s, "head": s}``, from the model's ``layout()``) gives those
    parts their own learning rate, ``s`` times the schedule's: their groups carry ``lr_scale``.
    With no scale other than 1 the groups are the two above, exactly.
    """
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    part_of = _parts(model, lr_scales or {})
    groups: dict[tuple[str, bool], list[nn.Parameter]] = {}
    seen: set[int] = set()
    for param in model.parameters():
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        is_matrix = param.dim() >= 2 and (decay_embeddings or id(param) not in embeddings)
        groups.setdefault((part_of.get(id(param), "hidden"), is_matrix), []).append(param)
    result = []
    for part in ("hidden", *sorted({p for p, _ in groups} - {"hidden"})):
        for is_matrix in (True, False):
            params = groups.get((part, is_matrix), [])
            if part != "hidden" and not params:
                continue
            group: dict = {"params": params, "weight_decay": weight_decay if is_matrix else 0.0}
            if part != "hidden":
                group["lr_scale"] = (lr_scales or {})[part]
            result.append(group)
    return result


def _parts(model: nn.Module, lr_scales: dict[str, float]) -> dict[int, str]:
    """Parameter id -> "embedding" or "head", for the parts given a scale other than 1."""
    wanted = {part: scale for part, scale in lr_scales.items() if scale != 1.0}
    if not wanted:
        return {}
    layout = model.layout() if hasattr(model, "layout") else None
    if layout is None:
        raise ValueError("per-part learning rates need an llmbricks model (its layout() names the "
                         "embedding and the head)")
    owners = {"embedding": layout.embedding, "head": layout.head}
    found: dict[int, str] = {}
    for part in ("head", "embedding"):  # a tied table is the embedding's
        if part in wanted and owners[part] is not None:
            found.update({id(p): part for p in owners[part].parameters()})
    return found


def adamw(model: nn.Module, *, lr: float, weight_decay: float,
          betas: tuple[float, float] = (0.9, 0.999), decay_embeddings: bool = False,
          device: torch.device | None = None,
          lr_scales: dict[str, float] | None = None) -> torch.optim.AdamW:
    """AdamW over ``param_groups``; the fused kernel when this torch has one for the device."""
    groups = scaled(param_groups(model, weight_decay, decay_embeddings=decay_embeddings,
                                 lr_scales=lr_scales), lr)
    if not any(group["params"] for group in groups):
        raise ValueError("the model has no trainable parameters")
    device = device or next(model.parameters()).device
    fused = "fused" in inspect.signature(torch.optim.AdamW).parameters and device.type in ("cpu", "cuda")
    return torch.optim.AdamW(groups, lr=lr, betas=betas, **({"fused": True} if fused else {}))


def scaled(groups: list[dict], lr: float) -> list[dict]:
    """The groups with their starting ``lr``: ``lr`` times each group's ``lr_scale`` when set."""
    for group in groups:
        if "lr_scale" in group:
            group["lr"] = lr * group["lr_scale"]
    return groups


def build_optimizer(model: nn.Module, train: Any, registry: Any = None,
                    device: torch.device | None = None) -> torch.optim.Optimizer:
    """The run's optimizer: ``train.optimizer`` built through the registry, over ``model``."""
    from ..registry import get_registry

    recipe = (registry or get_registry()).build("optimizer", train.optimizer)
    return recipe.create(model, lr=train.lr, weight_decay=train.weight_decay,
                         betas=tuple(train.betas), decay_embeddings=train.decay_embeddings,
                         device=device or next(model.parameters()).device,
                         lr_scales={"embedding": train.embedding_lr_scale,
                                    "head": train.head_lr_scale})


def learning_rate(step: int, *, lr: float, total_steps: int, warmup_steps: int = 0,
                  min_lr: float = 0.0, schedule: Literal["constant", "cosine"] = "cosine") -> float:
    """The learning rate of optimizer step ``step`` (0-based) of ``total_steps``.

    Warmup: ``lr * (step + 1) / warmup_steps``, so the last warmup step really uses the peak (the
    book's appendix D never passed it to the optimizer). Then ``constant`` holds ``lr``;
    ``cosine`` decays ``lr_t = min_lr + (lr - min_lr) * (1 + cos(pi * p)) / 2`` with
    ``p = (step - warmup) / (total - 1 - warmup)``, so the first step after warmup is at the peak
    and the last step is exactly at ``min_lr``.
    """
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return lr
    span = total_steps - 1 - warmup_steps
    progress = min(1.0, (step - warmup_steps) / span) if span > 0 else 0.0  # one step: the peak
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_schedule(train: Any, registry: Any = None) -> Any:
    """The run's ``train.schedule`` component, built through the registry."""
    from ..registry import get_registry

    return (registry or get_registry()).build("schedule", train.schedule)


def schedule_curve(train: Any, steps: int | None = None, registry: Any = None) -> list[float]:
    """The rate of every step of a run of ``steps`` (default ``train.max_steps``), warmup included.

    A run budgeted in epochs or tokens learns its step count from its data; pass ``steps``.
    """
    from ..errors import ConfigError

    total = steps if steps is not None else train.max_steps
    if total is None:
        raise ConfigError("train.max_steps is unset (the budget is in epochs or tokens): give "
                          "the number of steps to draw (--steps N)")
    if total < 1:
        raise ConfigError(f"the number of steps must be at least 1, got {total}")
    schedule = build_schedule(train, registry)
    return [schedule.rate(step, lr=train.lr, total_steps=total, warmup_steps=train.warmup_steps,
                          min_lr=train.min_lr) for step in range(total)]


def set_learning_rate(optimizer: torch.optim.Optimizer, value: float) -> None:
    """Every group at the schedule's ``value``, times its ``lr_scale`` when it has one (Muon's
    matrices run at their own rate; a group without a scale gets ``value`` itself, exactly)."""
    for group in optimizer.param_groups:
        scale = group.get("lr_scale")
        group["lr"] = value if scale is None else value * scale
