"""The Component base: what every registered part has in common.

Kept free of torch so that the config schema and the CLI's help can load without it (the
registry itself imports torch as soon as it loads the built-in plugins).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

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
    "datasource",
    "logger",
)


class ParamsModel(BaseModel):
    """Base of every component's ``Params``: unknown keys are errors, values are immutable."""

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

    @property
    def head_dim(self) -> int:
        return self.emb_dim // self.n_heads


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
