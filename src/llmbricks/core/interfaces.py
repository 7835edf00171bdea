"""The interface of each component kind: its constructor contract and what it must do.

A component is built as ``cls(params, **context)``; the context of each kind is named in its
class docstring. Modules (everything that holds weights) are ``torch.nn.Module``s.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from torch import Tensor, nn

from .component import Component, Dims, ParamsModel
from .kv_cache import KVCache, LayerKVCache

__all__ = [
    "Adapter",
    "Attention",
    "Block",
    "Component",
    "DataSource",
    "Dims",
    "Embedding",
    "FeedForward",
    "Head",
    "Logger",
    "Model",
    "ModelParts",
    "ModuleComponent",
    "Norm",
    "PositionContext",
    "PositionalEncoding",
    "PromptTemplate",
    "Tokenizer",
    "Trainer",
]


class ModuleComponent(Component, nn.Module):
    """A component that holds weights. Built with ``(params, dims)``."""

    def __init__(self, params: ParamsModel, dims: Dims) -> None:
        nn.Module.__init__(self)
        self.params = params
        self.dims = dims


# --- text -------------------------------------------------------------------------------------


class Tokenizer(Component, ABC):
    """Text <-> token ids. Built with ``(params)``; trainable ones learn their vocabulary."""

    kind: ClassVar[str] = "tokenizer"
    trainable: ClassVar[bool] = False
    #: ``decode(encode(s)) == s`` for every string (false for word-level tokenizers with <|unk|>).
    lossless: ClassVar[bool] = True

    def __init__(self, params: ParamsModel) -> None:
        self.params = params

    @classmethod
    def known_vocab_size(cls, params: ParamsModel) -> int | None:
        """The vocabulary size these params imply without data, or ``None`` if it is learned."""
        return None

    @property
    @abstractmethod
    def vocab_size(self) -> int: ...

    @property
    def special_tokens(self) -> dict[str, int]:
        return {}

    @abstractmethod
    def encode(self, text: str, allowed_special: Iterable[str] | Literal["all"] = ()) -> list[int]:
        ...

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Encode many texts (no specials); tokenizers with a parallel core override this."""
        return [self.encode(text) for text in texts]

    @abstractmethod
    def decode(self, ids: Iterable[int]) -> str: ...

    @property
    def is_trained(self) -> bool:
        """Whether the vocabulary is ready (always, for tokenizers that do not learn one)."""
        return True

    def train(self, texts: Iterable[str]) -> None:
        raise TypeError(f"tokenizer '{self.name}' is not trainable")

    def fingerprint(self) -> str:
        """A sha256 of the saved state: equal fingerprints encode every text the same way."""
        import hashlib
        import tempfile

        digest = hashlib.sha256(self.name.encode())
        with tempfile.TemporaryDirectory() as tmp:
            self.save(tmp)
            for path in sorted(Path(tmp).rglob("*")):
                if path.is_file():
                    digest.update(path.relative_to(tmp).as_posix().encode())
                    digest.update(path.read_bytes())
        return digest.hexdigest()

    @abstractmethod
    def save(self, directory: str | Path) -> None:
        """Write everything needed to rebuild this tokenizer into ``directory``."""

    @classmethod
    @abstractmethod
    def load(cls, directory: str | Path) -> Tokenizer: ...


# --- model parts ------------------------------------------------------------------------------


class Embedding(ModuleComponent):
    """Token ids ``[B, T]`` -> vectors ``[B, T, D]``. Built with ``(params, dims)``."""

    kind: ClassVar[str] = "embedding"

    @property
    @abstractmethod
    def weight(self) -> nn.Parameter:
        """The ``[vocab, D]`` table, exposed so a head can tie to it."""


@dataclass(frozen=True)
class PositionContext:
    """The positions of one forward pass, and what the positional component derived from them.

    Built once per forward pass by ``PositionalEncoding.context`` and handed to every layer, so
    rotation tables and score biases are computed once, not once per layer.
    """

    q: Tensor  # [Tq] positions of the new tokens
    k: Tensor  # [Tk] positions of every key: the cached ones, then the new ones
    rotation: Any = None  # component-specific tables for ``rotate`` (e.g. cos and sin)
    bias: Tensor | None = None  # additive score bias [H, Tq, Tk], or None


class PositionalEncoding(ModuleComponent):
    """Where position enters the model. Built with ``(params, dims)``.

    Owned by the model, which calls ``context`` once per forward pass and hands the result to
    attention. Each hook defaults to a no-op: absolute kinds add in ``embed``, rotary kinds act
    in ``rotate``, relative kinds return an additive ``[H, Tq, Tk]`` score bias from ``bias``.
    """

    kind: ClassVar[str] = "positional"

    def positions_limit(self) -> int | None:
        """Longest sequence this instance can encode (a learned table's size), or ``None``."""
        return None

    def context(self, q_positions: Tensor, k_positions: Tensor) -> PositionContext:
        """Everything layers need about these positions, computed once."""
        return PositionContext(q=q_positions, k=k_positions, rotation=self.rotation(q_positions),
                               bias=self.bias(q_positions, k_positions))

    def embed(self, x: Tensor, positions: Tensor) -> Tensor:
        return x

    def rotation(self, positions: Tensor) -> Any:
        """Tables ``rotate`` needs for the new tokens' positions (rotary kinds)."""
        return None

    def rotate(self, q: Tensor, k: Tensor, pos: PositionContext) -> tuple[Tensor, Tensor]:
        """Rotate the new queries and keys ``[B, H, T, hd]`` using ``pos.rotation``."""
        return q, k

    def bias(self, q_positions: Tensor, k_positions: Tensor) -> Tensor | None:
        """Additive attention-score bias ``[H, Tq, Tk]`` (relative kinds), or ``None``."""
        return None


class Attention(ModuleComponent):
    """Causal self-attention ``[B, T, D] -> [B, T, D]``. Built with ``(params, dims)``.

    ``forward(x, positional, pos, cache=None)``: ``pos`` holds the positions of the ``T`` new
    tokens and of every key, with the rotation tables and score bias computed once for the
    pass; with a cache, keys and values of earlier tokens come from it.
    """

    kind: ClassVar[str] = "attention"

    @abstractmethod
    def forward(self, x: Tensor, positional: PositionalEncoding, pos: PositionContext,
                cache: LayerKVCache | None = None) -> Tensor: ...


class Norm(ModuleComponent):
    """Normalizes the last dimension. Built with ``(params, dims)``."""

    kind: ClassVar[str] = "norm"


class FeedForward(ModuleComponent):
    """Position-wise MLP ``[B, T, D] -> [B, T, D]``. Built with ``(params, dims)``."""

    kind: ClassVar[str] = "feedforward"


class Block(ModuleComponent):
    """One transformer block.

    Built with ``(params, dims, attention=..., norm=..., feedforward=...)``: each a zero-argument
    factory returning a fresh module, so the block decides how many it needs.
    """

    kind: ClassVar[str] = "block"

    @abstractmethod
    def forward(self, x: Tensor, positional: PositionalEncoding, pos: PositionContext,
                cache: LayerKVCache | None = None) -> Tensor: ...


class Head(ModuleComponent):
    """Hidden states ``[B, T, D]`` -> outputs (logits over the vocabulary, class logits...).

    Built with ``(params, dims)``. ``forward(hidden, lengths=None)``: ``lengths`` ``[B]`` counts
    each row's real tokens when a batch is right-padded (positions ``>= lengths[b]`` are padding),
    so a pooling head can skip the padding; per-token heads ignore it. A head with
    ``per_token = False`` returns one vector per sequence ``[B, C]`` instead of ``[B, T, C]``.
    """

    kind: ClassVar[str] = "head"
    #: True: one output per position ``[B, T, C]`` (causal); False: one per sequence ``[B, C]``.
    per_token: ClassVar[bool] = True

    def tie(self, weight: nn.Parameter) -> None:
        """Share the embedding table if the head wants to; the default keeps its own weights."""


@dataclass(frozen=True)
class ModelParts:
    """Factories for the parts a model assembles: each call returns a new module."""

    embedding: Callable[[], Embedding]
    positional: Callable[[], PositionalEncoding]
    block: Callable[[int], Block]
    norm: Callable[[], Norm]
    head: Callable[[], Head]


class Model(ModuleComponent):
    """The assembled network. Built with ``(params, dims, parts: ModelParts)``."""

    kind: ClassVar[str] = "model"

    def __init__(self, params: ParamsModel, dims: Dims, parts: ModelParts) -> None:
        super().__init__(params, dims)
        #: Adapters applied to this model (``build_model`` records them): their tensors are
        #: checkpointed apart from the base weights.
        self.adapters: list[Adapter] = []

    @abstractmethod
    def hidden(self, ids: Tensor, positions: Tensor | None = None,
               cache: KVCache | None = None) -> Tensor:
        """Final hidden states ``[B, T, D]`` (after the last norm, before the head)."""

    def forward(self, ids: Tensor, positions: Tensor | None = None,
                cache: KVCache | None = None, *, lengths: Tensor | None = None) -> Tensor:
        """The head's outputs; ``lengths`` ``[B]`` (real tokens per right-padded row) reaches it."""
        hidden = self.hidden(ids, positions, cache)
        return self.head(hidden) if lengths is None else self.head(hidden, lengths=lengths)

    @abstractmethod
    def replace_head(self, head: Head) -> None: ...

    def new_cache(self, batch_size: int, max_len: int) -> KVCache:
        """A key/value cache preallocated for ``batch_size x max_len`` tokens."""
        weight = next(self.parameters())
        return KVCache(self.dims.n_layers, batch_size, self.dims.n_kv_heads, max_len,
                       self.dims.head_dim, dtype=weight.dtype, device=weight.device)


# --- training and data ------------------------------------------------------------------------


class Adapter(Component, ABC):
    """Changes a built model in place (e.g. LoRA). Built with ``(params)``."""

    kind: ClassVar[str] = "adapter"

    def __init__(self, params: ParamsModel) -> None:
        self.params = params

    @abstractmethod
    def apply(self, model: Model) -> None: ...

    @abstractmethod
    def merge(self, model: Model) -> None:
        """Fold the adapter back into the base weights."""

    @abstractmethod
    def state_dict(self, model: nn.Module) -> dict[str, Tensor]:
        """The adapter's own tensors in ``model``, by state-dict name (saved apart from the base)."""


class PromptTemplate(Component, ABC):
    """Turns an instruction record into text: the prompt, then the response. Built with ``(params)``.

    A training example is ``prompt(record) + response(record)``; at inference the model continues
    ``prompt(record)``. The prompt ends where the answer begins (it includes the response marker,
    e.g. ``### Response:``), so masking the prompt masks exactly what the model is not asked to say.
    """

    kind: ClassVar[str] = "prompt"

    def __init__(self, params: ParamsModel) -> None:
        self.params = params

    @abstractmethod
    def prompt(self, record: Mapping[str, str]) -> str:
        """The instruction and input (if any), up to and including the response marker."""

    def response(self, record: Mapping[str, str]) -> str:
        """The text the model learns to produce after the prompt."""
        return record["output"]


class Trainer(Component, ABC):
    """Fits a model: supplies batches, a loss and an evaluation to ``core.loop``.

    Built with ``(params)``.
    """

    kind: ClassVar[str] = "trainer"

    def __init__(self, params: ParamsModel) -> None:
        self.params = params

    @abstractmethod
    def fit(self, session: Any) -> Mapping[str, Any]:
        """Train in ``session`` (a ``core.training.Session``: run, config, tokenizer, device...).

        Returns the run's summary: step, tokens, losses, and the trainer's own results (the
        classify trainer's accuracies and test report, the instruct trainer's test loss).
        """


class DataSource(Component, ABC):
    """Yields texts, ``(text, label)`` rows or instruction records. Built with ``(params)``.

    ``records`` says which: ``"text"`` sources yield ``str`` pieces whose concatenation is the
    corpus (in order, so a token cache can stream it); ``"labeled"`` ones yield
    ``(text, label)`` tuples; ``"instruction"`` ones yield dicts with ``instruction``, ``input``
    and ``output``.
    """

    kind: ClassVar[str] = "datasource"
    records: ClassVar[Literal["text", "labeled", "instruction"]] = "text"

    def __init__(self, params: ParamsModel) -> None:
        self.params = params

    @abstractmethod
    def __iter__(self) -> Iterator[Any]: ...

    def describe(self) -> str:
        """Where the data comes from (a path, a URL, a module), for reports and errors."""
        return self.name


class Logger(Component, ABC):
    """Receives training events (step, eval, checkpoint, end). Built with ``(params)``."""

    kind: ClassVar[str] = "logger"

    def __init__(self, params: ParamsModel) -> None:
        self.params = params

    @abstractmethod
    def log(self, event: str, **fields: Any) -> None: ...

    def close(self) -> None:
        """Flush and release resources at the end of a run."""

