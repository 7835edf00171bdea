"""Which weights train: the freeze policies of finetuning (``train.trainable``).

The book's chapter 6 freezes everything but the last block, the final norm and the new head;
appendix E freezes the whole base and trains only LoRA's A and B. A policy names the base
weights that train; adapter tensors always train. Frozen weights get no gradient, so AdamW
never sees them (``core.train.optim`` leaves them out) and they stay bit for bit unchanged.

``last_block`` and ``head`` find their parts through the model's ``layout()`` (its blocks, final
norm and head by role), so they work for any model that declares one.
"""

from __future__ import annotations

from typing import Literal

from torch import nn

from ..build import adapter_state_names
from ..errors import ConfigError
from ..interfaces import Model

Policy = Literal["auto", "all", "last_block", "head", "none"]


def resolve_policy(policy: Policy, model: Model, trainer_default: Policy) -> Policy:
    """``auto``: adapters only when the model has adapters, else the trainer's default."""
    if policy != "auto":
        return policy
    return "none" if model.adapters else trainer_default


def trainable_modules(model: Model, policy: Policy) -> list[nn.Module]:
    """The modules whose base weights train under ``policy`` (not ``auto``)."""
    if policy == "all":
        return [model]
    if policy == "none":
        return []
    layout = model.layout()
    if policy == "head":
        return [layout.head]
    if not layout.blocks:
        raise ConfigError(f"train.trainable: last_block needs a model with blocks (model "
                          f"'{model.name}' declares none); use all, head or none")
    return [m for m in (layout.blocks[-1], layout.norm, layout.head) if m is not None]


def apply_trainable(model: Model, policy: Policy, trainer_default: Policy = "all") -> Policy:
    """Set ``requires_grad`` by ``policy``; adapter tensors always train. Returns the policy used.

    ``head`` with a head tied to the token embedding trains that one shared table.
    """
    used = resolve_policy(policy, model, trainer_default)
    model.requires_grad_(False)
    for module in trainable_modules(model, used):
        module.requires_grad_(True)
    adapters = adapter_state_names(model)
    for name, param in model.named_parameters():
        if name in adapters:
            param.requires_grad_(True)
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError("train.trainable: none leaves nothing to train (the model has no "
                          "adapters); add model.adapters or choose all, last_block or head")
    return used
