"""The Component base: what every registered part has in common.

Kept free of torch so that the config schema and the CLI's help can load without it (the
registry itself imports torch as soon as it loads the built-in plugins).
"""

from __future__ import annotations

import types
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

#: The kinds the core knows, in the order a model is assembled and trained.
KINDS: tuple[str, ...] = (
    "tokenizer",
    "embedding",
    "positional",
    "attention",
    "norm",
    "feedforward",
    "block",
    "model",
    "head",
    "adapter",
    "prompt",
    "trainer",
    "optimizer",
    "schedule",
    "datasource",
    "logger",
)


def _members(annotation: Any) -> tuple[Any, ...]:
    """The alternatives of a type: ``int | None`` -> ``(int, NoneType)``; ``Annotated`` unwrapped."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _members(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return tuple(m for arg in get_args(annotation) for m in _members(arg))
    return (annotation,)


def _takes_bool(annotation: Any) -> bool:
    """Whether a boolean is a meaningful value of this type (``bool``, ``Any``, a bool literal)."""
    for member in _members(annotation):
        if member in (bool, Any, object) or isinstance(member, type) and issubclass(member, BaseModel):
            return True
        if get_origin(member) is Literal and any(isinstance(v, bool) for v in get_args(member)):
            return True
    return False


def _number_word(annotation: Any) -> str | None:
    """``"an integer"`` or ``"a number"`` when the type is numeric, else ``None``."""
    members = _members(annotation)
    if float in members:
        return "a number"
    return "an integer" if int in members else None


def _misplaced_bool(annotation: Any, value: Any) -> str | None:
    """What was meant, when ``value`` is (or holds) a boolean where a number is meant."""
    if isinstance(value, bool):
        return None if _takes_bool(annotation) else _number_word(annotation)
    if not isinstance(value, (list, tuple)):
        return None
    for member in _members(annotation):
        origin = get_origin(member)
        if not (isinstance(origin, type) and issubclass(origin, Sequence)) or origin is str:
            continue
        args = [a for a in get_args(member) if a is not Ellipsis] or [Any]
        for index, item in enumerate(value):
            wanted = _misplaced_bool(args[min(index, len(args) - 1)], item)
            if wanted:
                return wanted
    return None


class StrictNumbers(BaseModel):
    """Numbers in configs are real numbers: no NaN or infinity, and a boolean is not an integer.

    Pydantic's lax mode reads ``true`` as ``1`` for an ``int`` field and accepts ``nan`` for a
    ``float``; for a config either is a mistake that would only surface deep inside torch.
    Every config section and every component's ``Params`` derives from this.
    """

    model_config = ConfigDict(allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, (bool, list, tuple)) and info.field_name in cls.model_fields:
            wanted = _misplaced_bool(cls.model_fields[info.field_name].annotation, value)
            if wanted:
                shown = str(value).lower() if isinstance(value, bool) else "a list with a boolean"
                raise ValueError(f"expected {wanted}, got {shown} (a boolean is not a number)")
        return value


class ParamsModel(StrictNumbers):
    """Base of every component's ``Params``: unknown keys are errors, values are immutable,
    numbers are finite and never booleans (see ``StrictNumbers``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoParams(ParamsModel):
    """For components that take no parameters."""


class Component:
    """A registered part: a kind, a name, a pydantic ``Params`` model and a docstring summary.

    Built as ``cls(params, **context)``, where the context is what the kind's contract names.
    """

    kind: ClassVar[str]
    name: ClassVar[str]
    Params: ClassVar[type[ParamsModel]] = NoParams

    @classmethod
    def summary(cls) -> str:
        """The first line of the class docstring: what ``llmbricks components`` shows."""
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0].strip() if doc else ""

    @classmethod
    def check(cls, params: Any, dims: Dims) -> None:
        """Reject params that cannot work with these dims (raise ``ValueError`` saying why).

        Called when a config is resolved, so a bad combination fails before a tensor is made.
        """


@dataclass(frozen=True)
class Dims:
    """The model's shape, computed once from the model config and handed to every module."""

    vocab_size: int
    context_length: int
    emb_dim: int
    n_heads: int
    n_kv_heads: int
    n_layers: int
    dropout: float
    #: One attention head's width when set apart from ``emb_dim / n_heads`` (Qwen3, Gemma).
    head_size: int | None = None

    @property
    def head_dim(self) -> int:
        return self.head_size if self.head_size is not None else self.emb_dim // self.n_heads


class ComponentSpec(BaseModel):
    """A component chosen by name, with its parameters: written ``name`` or ``{name, ...params}``.

    After resolution against the registry, ``params`` holds every parameter, defaults included.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    params: dict[str, Any] = {}

    @classmethod
    def parse(cls, value: Any) -> ComponentSpec:
        if isinstance(value, ComponentSpec):
            return value
        if isinstance(value, str):
            return cls(name=value)
        if isinstance(value, dict):
            params = dict(value)
            name = params.pop("name", None)
            if not isinstance(name, str) or not name:
                raise ValueError("a component spec needs a 'name' (write `name` or `{name: ..., param: ...}`)")
            return cls(name=name, params=params)
        raise ValueError(
            f"expected a component name or {{name: ..., ...}}, got {type(value).__name__} {value!r}"
        )

    def to_data(self) -> dict[str, Any]:
        """The config-file form: ``{name: ..., **params}``."""
        return {"name": self.name, **self.params}
