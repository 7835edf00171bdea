"""Muon (Keller Jordan 2024): momentum, orthogonalised, for the hidden weight matrices.

For each 2-D weight inside the blocks (attention and feed-forward projections):

    b = mu b + g;   u = g + mu b (Nesterov) or b;   O = NS5(u);
    p -= lr_muon * sqrt(max(1, rows / cols)) * O      (and p *= 1 - lr_muon * wd)

``NS5`` is a Newton-Schulz iteration that pushes every singular value of ``u / ||u||_F`` towards
1 without an SVD: with ``X`` the (wide) normalised matrix, five times

    A = X X^T;   X = a X + (b A + c A^2) X,   (a, b, c) = (3.4445, -4.7750, 2.0315)

The quintic's coefficients trade exactness for speed: singular values land in about [0.7, 1.2],
which is what the update needs (a direction for every singular direction, not their sizes).

Everything else (the embedding table, the head, norms' gains, biases) is trained by AdamW with
``train.lr`` and ``train.betas``, as Muon's authors do. Which parameters are hidden matrices
comes from the model's declared parts (``layout().blocks``), never from their names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from pydantic import Field
from torch import Tensor, nn

from llmbricks.core.component import ParamsModel
from llmbricks.core.interfaces import Model, Optimizer
from llmbricks.core.train.optim import param_groups

#: The quintic's coefficients: steep near 0, so small singular values grow fast.
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def orthogonalize(update: Tensor, steps: int = 5, eps: float = 1e-7) -> Tensor:
    """``NS5(update)``: roughly ``U V^T`` of ``update = U S V^T``, by ``steps`` Newton-Schulz steps."""
    a, b, c = NS_COEFFICIENTS
    tall = update.shape[-2] > update.shape[-1]
    x = update.mT if tall else update                      # iterate on the wide side: X X^T small
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + eps)     # every singular value <= 1
    for _ in range(steps):
        gram = x @ x.mT                                    # A = X X^T
        x = a * x + (b * gram + c * gram @ gram) @ x       # X = a X + (b A + c A^2) X
    return x.mT if tall else x


class Muon(torch.optim.Optimizer):
    """Muon on groups marked ``muon``, AdamW on the others; one state_dict for both."""

    def __init__(self, groups: list[dict], *, momentum: float, nesterov: bool, ns_steps: int,
                 betas: tuple[float, float], eps: float = 1e-8) -> None:
        defaults = {"momentum": momentum, "nesterov": nesterov, "ns_steps": ns_steps,
                    "betas": betas, "eps": eps, "muon": False, "weight_decay": 0.0}
        super().__init__(groups, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if group["muon"]:
                self._muon(group, params)
            else:
                self._adamw(group, params)
        return loss

    def _muon(self, group: dict, params: Iterable[Tensor]) -> None:
        lr, mu, decay = group["lr"], group["momentum"], group["weight_decay"]
        by_shape: dict[tuple[int, ...], list[tuple[Tensor, Tensor]]] = {}
        for param in params:
            state = self.state[param]
            if not state:
                state["momentum_buffer"] = torch.zeros_like(param)
            buffer = state["momentum_buffer"].mul_(mu).add_(param.grad)      # b = mu b + g
            update = param.grad.add(buffer, alpha=mu) if group["nesterov"] else buffer
            by_shape.setdefault(tuple(param.shape), []).append((param, update))
        # Matrices of one shape go through Newton-Schulz as one batch: the same maths per
        # matrix, a few large matmuls instead of many small ones.
        for (rows, cols), pairs in by_shape.items():
            updates = torch.stack([u.float() for _, u in pairs])
            directions = orthogonalize(updates, group["ns_steps"])
            for (param, _), direction in zip(pairs, directions, strict=True):
                if decay:
                    param.mul_(1 - lr * decay)
                param.add_(direction.to(param.dtype), alpha=-lr * max(1.0, rows / cols) ** 0.5)

    def _adamw(self, group: dict, params: Iterable[Tensor]) -> None:
        lr, (beta1, beta2), eps, decay = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        for param in params:
            state = self.state[param]
            if not state:
                state["step"] = torch.zeros((), dtype=torch.float32)
                state["exp_avg"] = torch.zeros_like(param)
                state["exp_avg_sq"] = torch.zeros_like(param)
            state["step"] += 1
            t = float(state["step"])
            grad = param.grad
            state["exp_avg"].lerp_(grad, 1 - beta1)                         # m = b1 m + (1 - b1) g
            state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            m_hat = state["exp_avg"] / (1 - beta1 ** t)
            v_hat = state["exp_avg_sq"] / (1 - beta2 ** t)
            if decay:
                param.mul_(1 - lr * decay)
            param.addcdiv_(m_hat, v_hat.sqrt_().add_(eps), value=-lr)


def hidden_matrices(model: nn.Module) -> set[int]:
    """The ids of the trainable 2-D parameters inside the model's blocks: Muon's share."""
    if not isinstance(model, Model):
        raise ValueError("muon needs an llmbricks model (its layout() names the blocks)")
    return {id(p) for block in model.layout().blocks for p in block.parameters()
            if p.requires_grad and p.dim() == 2}


class MuonOptimizer(Optimizer):
    """Muon: orthogonalised momentum on the blocks' matrices, AdamW on everything else."""

    name = "muon"
    state_per_parameter = 2.0  # at most: AdamW's two moments; Muon's matrices keep one

    class Params(ParamsModel):
        lr: float = Field(0.02, gt=0.0, le=10.0, description="the matrices' peak learning rate "
                          "(train.lr is the AdamW part's); the schedule scales both alike")
        momentum: float = Field(0.95, ge=0.0, lt=1.0, description="mu of the momentum buffer")
        nesterov: bool = Field(True, description="orthogonalise g + mu b instead of b")
        ns_steps: int = Field(5, ge=1, le=20, description="Newton-Schulz iterations")

    def create(self, model: nn.Module, *, lr: float, weight_decay: float,
               betas: tuple[float, float], decay_embeddings: bool, device: torch.device,
               lr_scales: dict[str, float] | None = None) -> torch.optim.Optimizer:
        p = self.params
        hidden = hidden_matrices(model)
        groups = []
        for group in param_groups(model, weight_decay, decay_embeddings=decay_embeddings,
                                  lr_scales=lr_scales):
            matrices = [q for q in group["params"] if id(q) in hidden]
            others = [q for q in group["params"] if id(q) not in hidden]
            if matrices:
                groups.append({"params": matrices, "muon": True, "lr": p.lr, "lr_scale": p.lr / lr,
                               "weight_decay": group["weight_decay"]})
            if others:
                scale = group.get("lr_scale", 1.0)  # the embedding's or the head's own rate
                groups.append({"params": others, "muon": False, "lr": lr * scale,
                               "weight_decay": group["weight_decay"],
                               **({"lr_scale": scale} if "lr_scale" in group else {})})
        if not groups:
            raise ValueError("the model has no trainable parameters")
        return Muon(groups, momentum=p.momentum, nesterov=p.nesterov, ns_steps=p.ns_steps,
                    betas=betas)
