"""LoRA (Hu et al. 2021; the book's appendix E): train a low-rank update beside frozen weights.

A wrapped layer computes ``y = W x + b + s B A dropout(x)`` with ``A: [r, in]`` and
``B: [out, r]``, and the scale ``s`` chosen by ``scaling``:

- ``alpha_over_r`` (the default): ``s = alpha / r``, as in the LoRA paper, PEFT, litgpt and
  torchtune: changing ``r`` does not change the update's size;
- ``alpha``: ``s = alpha``, the book's ``LoRALayer`` (``alpha * (x A B)``);
- ``rslora``: ``s = alpha / sqrt(r)`` (Kalajdzievski 2023, rank-stabilized LoRA).
 ``B`` starts at zero, so a freshly adapted model computes exactly what the base
model did, and only ``r (in + out)`` numbers per layer train instead of ``in * out``.

State-dict names are chosen so the two halves of a finetune can live apart:

- the wrapper keeps the base layer's own ``weight`` and ``bias`` Parameters under the same names
  (``blocks.0.attn.q_proj.weight``), so base checkpoints load into an adapted model unchanged
  (``load_state_dict(base, strict=False)`` reports only the LoRA tensors as missing);
- the adapter adds ``<layer>.lora_A`` and ``<layer>.lora_B``, which ``lora_state_dict`` picks out
  to save on their own and ``load_lora_state_dict`` puts back;
- ``merge`` folds the update into ``W`` and puts a plain ``nn.Linear`` back, so a merged model's
  state dict has exactly the original names and saves/exports as a normal model.

A layer whose weight is shared (a head tied to the embedding) is refused at ``apply``: the
update could not be merged into the one shared table without changing the embedding too.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from typing import ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor, nn
from torch.nn import functional as F

from llmbricks.core.component import ParamsModel
from llmbricks.core.errors import CheckpointError, ConfigError
from llmbricks.core.interfaces import Adapter, Model
from llmbricks.core.linear import Linear
from llmbricks.core.linear import linear as fast_linear

__all__ = [
    "LoRA",
    "LoRALinear",
    "load_lora_state_dict",
    "lora_layers",
    "lora_state_dict",
    "trainable_parameters",
]

#: The default: every Linear layer inside the model's blocks (its ``layout().blocks``), written
#: as the built-in blocks name them: ``blocks.{i}.attn.{q,k,v,out}_proj`` and
#: ``blocks.{i}.ff.{up,down}`` (plus ``gate`` for SwiGLU). A model with other names gets the same
#: choice, found by role, so the default never depends on a plugin's attribute names.
DEFAULT_TARGETS: tuple[str, ...] = ("*.attn.*_proj", "*.ff.*")

#: Targets that name a part by its role in ``Model.layout()`` rather than by a glob.
ROLE_TARGETS: tuple[str, ...] = ("@blocks", "@head")

#: How the update is scaled: alpha / r (default), alpha (the book), alpha / sqrt(r) (rsLoRA).
SCALINGS: tuple[str, ...] = ("alpha_over_r", "alpha", "rslora")

#: The suffixes of the adapter's own tensors in a state dict.
LORA_SUFFIXES: tuple[str, ...] = ("lora_A", "lora_B")


class LoRALinear(nn.Module):
    """A Linear layer plus a trainable low-rank update: ``W x + b + (alpha / r) B A dropout(x)``.

    Not an ``nn.Linear`` subclass on purpose: code that walks a model for ``nn.Linear`` (init
    schemes, a second ``apply``) must not mistake a wrapper for a plain layer. It registers the
    base layer's own ``weight``/``bias`` Parameters (not copies), so their state-dict names and
    any tying survive wrapping.
    """

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float = 0.0,
                 scaling: str = "alpha_over_r") -> None:
        super().__init__()
        if r < 1:
            raise ValueError(f"LoRA rank r must be >= 1, got {r}")
        if scaling not in SCALINGS:
            raise ValueError(f"LoRA scaling must be one of {', '.join(SCALINGS)}, got {scaling!r}")
        self.in_features = base.in_features
        self.out_features = base.out_features
        self.r = r
        self.alpha = alpha
        self.scaling = scaling
        self.dropout_p = dropout
        self.register_parameter("weight", base.weight)  # W: [out, in], the same Parameter
        self.register_parameter("bias", base.bias)      # b: [out] or None
        like = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.Parameter(torch.empty(r, self.in_features, **like))   # A: [r, in]
        self.lora_B = nn.Parameter(torch.empty(self.out_features, r, **like))  # B: [out, r]
        # Dropout on the update's input only: the frozen path sees x itself (as in PEFT).
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.reset_lora_parameters()

    @property
    def scale(self) -> float:
        """``s``: ``alpha / r`` (steady when r changes), ``alpha`` (the book), or
        ``alpha / sqrt(r)`` (rsLoRA)."""
        if self.scaling == "alpha":
            return self.alpha
        if self.scaling == "rslora":
            return self.alpha / math.sqrt(self.r)
        return self.alpha / self.r

    def reset_lora_parameters(self) -> None:
        """A as nn.Linear(in, r) would be; B = 0, so the update B A starts at exactly zero."""
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # U(-1/sqrt(in), 1/sqrt(in))
        nn.init.zeros_(self.lora_B)

    def delta_weight(self) -> Tensor:
        """``(alpha / r) B A``: the ``[out, in]`` matrix the update adds to ``W``, in fp32."""
        return self.scale * (self.lora_B.float() @ self.lora_A.float())

    def forward(self, x: Tensor) -> Tensor:
        base = fast_linear(x, self.weight, self.bias)                           # W x + b
        update = F.linear(F.linear(self.dropout(x), self.lora_A), self.lora_B)  # B (A x')
        return base + self.scale * update                                       # + (alpha/r) B A x'

    def merged(self) -> nn.Linear:
        """A plain linear layer (``core.linear.Linear``, an ``nn.Linear``) with
        ``W' = W + (alpha / r) B A`` and the same bias.

        ``W'`` is a new tensor, not ``W`` changed in place: a ``W`` shared with another module
        (a head tied to the embedding) must keep serving that module unchanged.
        """
        weight = self.weight
        plain = Linear(self.in_features, self.out_features, bias=self.bias is not None,
                       device="meta")  # no allocation or init: both tensors are replaced
        with torch.no_grad():
            folded = (weight.float() + self.delta_weight()).to(weight.dtype)     # W + (alpha/r) B A
        plain.weight = nn.Parameter(folded, requires_grad=weight.requires_grad)
        plain.bias = self.bias
        return plain

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, r={self.r}, alpha={self.alpha}, "
                f"scaling={self.scaling}, dropout={self.dropout_p}")


class LoRA(Adapter):
    """Low-rank adapters on chosen Linear layers: few trainable weights, foldable back in."""

    name = "lora"

    class Params(ParamsModel):
        r: int = Field(8, ge=1, le=1 << 16, description="rank of the update B A (A: [r, in], B: [out, r])")
        alpha: float = Field(
            16.0, gt=0, description="the update is scaled by alpha / r (0 would train nothing)")
        scaling: Literal["alpha_over_r", "alpha", "rslora"] = Field(
            "alpha_over_r", description="the update's scale: alpha / r (the paper, PEFT), alpha "
            "(the book's LoRALayer), or alpha / sqrt(r) (rsLoRA)")
        dropout: float = Field(
            0.0, ge=0.0, lt=1.0, description="dropout on the update's input, in train mode only")
        targets: list[str] = Field(
            default_factory=lambda: list(DEFAULT_TARGETS), min_length=1,
            description="globs (fnmatch) over module names of the Linear layers to wrap; "
            "'*' wraps every Linear, the head included; @blocks / @head: every Linear of the "
            "model's blocks / head, whatever their names (the default means @blocks)")
        freeze_base: bool = Field(
            True, description="freeze every non-LoRA parameter, so only A and B train")

    params: Params
    #: How many available layer names a "no match" error lists.
    listed_in_errors: ClassVar[int] = 8

    def apply(self, model: Model) -> None:
        """Wrap every ``nn.Linear`` whose qualified name matches a target glob, in place.

        Applying again is a no-op for layers already wrapped with the same ``r``, ``alpha`` and
        ``dropout`` (a wrapper is never wrapped); other settings raise ``ConfigError``, since
        silently keeping the first ones would train something else than the config says.
        """
        p = self.params
        matched = _matching_modules(model, _by_role(p.targets))
        linears = {name: m for name, m in matched.items() if isinstance(m, nn.Linear)}
        wrapped = {name: m for name, m in matched.items() if isinstance(m, LoRALinear)}
        if not linears and not wrapped:
            raise ConfigError(_no_match_message(model, p.targets, self.listed_in_errors))
        _refuse_shared_weights(model, linears)
        for name, layer in wrapped.items():
            wrapped_with = (layer.r, layer.alpha, layer.dropout_p, layer.scaling)
            if wrapped_with != (p.r, p.alpha, p.dropout, p.scaling):
                raise ConfigError(
                    f"adapter lora: {name} is already wrapped with r={layer.r}, "
                    f"alpha={layer.alpha}, dropout={layer.dropout_p}, scaling={layer.scaling}, "
                    f"not r={p.r}, alpha={p.alpha}, dropout={p.dropout}, scaling={p.scaling}; "
                    "merge() first or use the same settings")
        for name, linear in linears.items():
            _replace(model, name, LoRALinear(linear, p.r, p.alpha, p.dropout, p.scaling))
        if p.freeze_base:
            _freeze_all_but_lora(model)

    def merge(self, model: Model) -> None:
        """Fold every LoRA wrapper back into a plain ``nn.Linear`` (``W <- W + (alpha/r) B A``).

        Afterwards the model has its original module types and state-dict names. Gradient flags
        are left as they are: unfreeze with ``model.requires_grad_(True)`` to train it fully.
        """
        for name, layer in lora_layers(model).items():
            _replace(model, name, layer.merged())

    def state_dict(self, model: nn.Module) -> dict[str, Tensor]:
        """The adapter's own tensors (see ``lora_state_dict``)."""
        return lora_state_dict(model)

    def load_state_dict(self, model: nn.Module, state: Mapping[str, Tensor]) -> None:
        """Load the adapter's own tensors (see ``load_lora_state_dict``)."""
        load_lora_state_dict(model, state)


# --- helpers ----------------------------------------------------------------------------------


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """Every LoRA wrapper in the model, by qualified name, in module order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def lora_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """Only the ``A`` and ``B`` tensors, named relative to ``model`` (``<layer>.lora_A``).

    Small (``r (in + out)`` per layer) and saved apart from the base weights, so one base
    checkpoint can serve many finetunes. Tensors are detached views, like ``state_dict``'s.
    """
    return {f"{name}.{suffix}": getattr(layer, suffix).detach()
            for name, layer in lora_layers(model).items() for suffix in LORA_SUFFIXES}


def load_lora_state_dict(model: nn.Module, state: Mapping[str, Tensor]) -> None:
    """Copy saved ``A``/``B`` tensors into an adapted model; every name and shape must match.

    Raises ``CheckpointError`` naming missing, unexpected or misshapen tensors (a different
    ``targets`` or ``r`` than the state was trained with), before changing anything.
    """
    own = lora_state_dict(model)
    if not own:
        raise CheckpointError("the model has no LoRA layers to load into: apply the adapter first")
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise CheckpointError(f"LoRA state does not match the model: {_key_report(missing, unexpected)}")
    for key, tensor in own.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"LoRA state does not match the model: {key} has shape {list(state[key].shape)} "
                f"in the state but {list(tensor.shape)} in the model (a different r?)")
    with torch.no_grad():
        for key, tensor in own.items():
            tensor.copy_(state[key])  # casts dtype and moves device as needed


def trainable_parameters(model: nn.Module) -> int:
    """How many numbers the optimizer updates (``requires_grad``); shared tensors count once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _by_role(targets: list[str]) -> list[str]:
    """The default targets mean the blocks' Linear layers, found through the model's layout."""
    return ["@blocks"] if tuple(targets) == DEFAULT_TARGETS else targets


def _matching_modules(model: Model, targets: Iterable[str]) -> dict[str, nn.Module]:
    """Modules (Linear or already wrapped) named by a role target or matching a glob."""
    targets = list(targets)
    layout = model.layout() if any(t in ROLE_TARGETS for t in targets) else None
    parts = [layout.blocks if role == "@blocks" else [layout.head]
             for role in targets if role in ROLE_TARGETS] if layout is not None else []
    in_role = {id(m) for group in parts for part in group for m in part.modules()}
    globs = [t for t in targets if t not in ROLE_TARGETS]
    return {name: m for name, m in model.named_modules()
            if name and isinstance(m, (nn.Linear, LoRALinear))
            and (id(m) in in_role or any(fnmatchcase(name, g) for g in globs))}


def _refuse_shared_weights(model: nn.Module, linears: Mapping[str, nn.Linear]) -> None:
    """Raise if a layer to wrap shares its weight with another module (a tied head).

    Such a layer adapts fine, but ``merge`` could not fold ``(alpha/r) B A`` into the one shared
    table without changing the embedding too; untying instead would leave a model its own
    config (``tie_weights: true``) no longer describes. So it fails here, before training.
    """
    owners: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        owners.setdefault(id(param), []).append(name)
    for name, linear in linears.items():
        others = [n for n in owners.get(id(linear.weight), []) if n != f"{name}.weight"]
        if others:
            raise ConfigError(
                f"adapter lora: {name}.weight is shared with {others[0]} (a tied head?), so LoRA "
                f"could not be merged into it; untie it (head: {{tie_weights: false}}) or leave "
                f"{name} out of targets")


def _no_match_message(model: nn.Module, globs: list[str], listed: int) -> str:
    names = [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, LoRALinear))]
    shown = ", ".join(names[:listed]) + (f", ... ({len(names)} in all)" if len(names) > listed else "")
    return (f"adapter lora: targets {globs} match no Linear layer; "
            f"Linear layers: {shown or '(none)'}")


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    """Put ``module`` where the submodule called ``name`` is (``a.b.c`` -> ``a.b``'s ``c``)."""
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def _freeze_all_but_lora(model: nn.Module) -> None:
    model.requires_grad_(False)  # every base tensor, embeddings and norms included
    for layer in lora_layers(model).values():
        layer.lora_A.requires_grad_(True)
        layer.lora_B.requires_grad_(True)


def _key_report(missing: list[str], unexpected: list[str], shown: int = 3) -> str:
    def some(keys: list[str]) -> str:
        more = f", ... ({len(keys)} in all)" if len(keys) > shown else ""
        return ", ".join(keys[:shown]) + more

    parts = []
    if missing:
        parts.append(f"missing {some(missing)}")
    if unexpected:
        parts.append(f"unexpected {some(unexpected)}")
    return "; ".join(parts) + " (were targets the same as when it was saved?)"
