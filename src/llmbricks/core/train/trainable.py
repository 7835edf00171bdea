"""Which weights train: the freeze policies of finetuning (``train.trainable``).

The book's chapter 6 freezes everything but the last block, the final norm and the new head;
appendix E freezes the whole base and trains only LoRA's A and B. A policy names the base
weights that train; adapter tensors always train. Frozen weights get no gradient, so AdamW
never sees them (``core.optim`` leaves them out) and they stay bit for bit unchanged.

``last_block`` and ``head`` rely on the GPT assembly's attribute names: ``blocks`` (a list),
``norm`` (the final norm) and ``head``.
"""

from __future__ import annotations

from typing import Literal

from torch import nn

from ..build import adapter_state_names
from ..errors import ConfigError

Policy = Literal["auto", "all", "last_block", "head", "none"]


def resolve_policy(policy: Policy, model: nn.Module, trainer_default: Policy) -> Policy:
    """``auto``: adapters only when the model has adapters, else the trainer's default."""
    if policy != "auto":
        return policy
    return "none" if getattr(model, "adapters", None) else trainer_default


def trainable_modules(model: nn.Module, policy: Policy) -> list[nn.Module]:
    """The modules whose base weights train under ``policy`` (not ``auto``)."""
    if policy == "all":
        return [model]
    if policy == "none":
        return []
    parts = ["head"] if policy == "head" else ["blocks", "norm", "head"]
    missing = [name for name in parts if not isinstance(getattr(model, name, None), nn.Module)]
    if missing:
        raise ConfigError(f"train.trainable: {policy} needs a model with {', '.join(parts)} "
                          f"(this one has no {', '.join(missing)}); use all or none")
    if policy == "head":
        return [model.head]
    blocks = model.blocks
    return [blocks[len(blocks) - 1], model.norm, model.head]


def apply_trainable(model: nn.Module, policy: Policy, trainer_default: Policy = "all") -> Policy:
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
