"""The interface of each component kind: its constructor contract and what it must do.

A component is built as ``cls(params, **context)``; the context of each kind is named in its
class docstring. Modules (everything that holds weights) are ``torch.nn.Module``s.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from .component import Component, Dims, ParamsModel
from .kv_cache import KVCache, LayerKVCache
from .masks import causal_mask, position_mask

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
    "ModelLayout",
    "ModelParts",
    "ModuleComponent",
    "Norm",
    "Optimizer",
    "PositionContext",
    "PositionalEncoding",
    "PromptTemplate",
    "Schedule",
    "Tokenizer",
    "Trainer",
]


class ModuleComponent(Component, nn.Module):
    """A component that holds weights. Built with ``(params, dims)``."""

    def __init__(self, params: ParamsModel, dims: Dims) -> None:
        nn.Module.__init__(self)
        self.params = params
        self.dims = dims

    def residual_projections(self) -> list[nn.Module]:
        """This component's own layers whose output is added to the residual stream.

        GPT-2's init scales their weights by ``1/sqrt(2 n_layers)`` so the residual stream's
        variance does not grow with depth; the model asks each component rather than guessing
        from layer names. Attention returns its output projection, a feed-forward its last
        layer; most kinds have none.
        """
        return []


def residual_projections(root: nn.Module) -> set[nn.Module]:
    """Every layer under ``root`` that a component declares as a residual projection.

    Attention and feed-forward components written before ``residual_projections`` existed are
    read by the built-in names (``out_proj``, ``down``), with a warning.
    """
    found: set[nn.Module] = set()
    for module in root.modules():
        if not isinstance(module, ModuleComponent):
            continue
        declared = module.residual_projections()
        legacy = (isinstance(module, (Attention, FeedForward))
                  and type(module).residual_projections is ModuleComponent.residual_projections)
        if legacy:
            declared = [m for n, m in module.named_children() if n in ("out_proj", "down")]
            warn_deprecated(f"{module.kind} '{module.name}' does not define "
                            "residual_projections(); using its layers named out_proj/down")
        found.update(declared)
    return found


def warn_deprecated(message: str) -> None:
    """One line for a plugin written against an older contract: it still works, for now."""
    warnings.warn(message, DeprecationWarning, stacklevel=3)


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

    q: Tensor  # [Tq] positions of the new tokens; [B, Tq] when each row has its own
    k: Tensor  # [Tk] positions of every key: the cached ones, then the new ones
    rotation: Any = None  # component-specific tables for ``rotate`` (e.g. cos and sin)
    bias: Tensor | None = None  # additive score bias [H, Tq, Tk] ([B, H, Tq, Tk] per row), or None
    #: The component that made this context: attention asks it to rotate through ``rotate``.
    positional: PositionalEncoding | None = None

    def rotate(self, q: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
        """Queries and keys ``[B, H, T, hd]`` rotated to their positions (rotary kinds only)."""
        if self.positional is None:
            return q, k
        return self.positional.rotate(q, k, self)

    @property
    def per_row(self) -> bool:
        """Whether each row of the batch sits at its own positions (``q`` is ``[B, Tq]``).

        Continuous batching decodes streams of different lengths in one pass: row ``b``'s new
        token is at its own position, and key slots past it are not yet filled. Attention then
        masks by ``hidden_keys`` instead of assuming the queries are the newest keys.
        """
        return self.q.dim() == 2

    def hidden_keys(self, q_len: int, k_len: int, window: int | None = None) -> Tensor:
        """True where one of ``q_len`` queries may not attend to one of ``k_len`` keys, with an
        optional sliding ``window``: the one mask every attention kind applies.

        Rows at their own positions: ``[B, 1, Tq, Tk]``, read off the positions
        (``core.masks.position_mask``). Otherwise ``[Tq, Tk]``, the queries being the newest of
        the keys (``core.masks.causal_mask``), which holds on keys a window let go too.
        """
        if self.per_row:
            return position_mask(self.q, self.k, window).unsqueeze(-3)
        return causal_mask(q_len, k_len, device=self.q.device, window=window)

    def last_keys(self, k_len: int) -> PositionContext:
        """This context for the last ``k_len`` keys only.

        A sliding-window layer's cache returns just the keys its queries can still see (those
        ending at the newest), so the key positions and the bias's key columns are cut to them.
        """
        if self.k.shape[-1] == k_len:
            return self
        bias = self.bias[..., -k_len:] if self.bias is not None else None
        return dataclasses.replace(self, k=self.k[-k_len:], bias=bias)


class PositionalEncoding(ModuleComponent):
    """Where position enters the model. Built with ``(params, dims)``.

    Owned by the model, which calls ``context`` once per forward pass and hands the result to
    attention. Each hook defaults to a no-op: absolute kinds add in ``embed``, rotary kinds act
    in ``rotate``, relative kinds return an additive ``[H, Tq, Tk]`` score bias from ``bias``.
    """

    kind: ClassVar[str] = "positional"
    #: Whether ``embed``, ``rotation`` and ``bias`` accept ``[B, T]`` positions (each row at its
    #: own: continuous batching, ``PositionContext.per_row``). A component that does not say so
    #: is served one stream at a time, which is always right.
    per_row_positions: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        context = cls.__dict__.get("context")
        if context is not None:
            cls.context = _context_knowing_its_maker(context)

    def positions_limit(self) -> int | None:
        """Longest sequence this instance can encode (a learned table's size), or ``None``."""
        return None

    def context(self, q_positions: Tensor, k_positions: Tensor) -> PositionContext:
        """Everything layers need about these positions, computed once."""
        rotates = type(self).rotate is not PositionalEncoding.rotate
        return PositionContext(q=q_positions, k=k_positions, rotation=self.rotation(q_positions),
                               bias=self.bias(q_positions, k_positions),
                               positional=self if rotates else None)

    def embed(self, x: Tensor, positions: Tensor) -> Tensor:
        return x

    def rotation(self, positions: Tensor) -> Any:
        """Tables ``rotate`` needs for the new tokens' positions (rotary kinds)."""
        return None

    def rotation_angles(self, positions: Tensor) -> Tensor | None:
        """The angle ``[T, pairs]`` (radians) each pair of a head's dims turns by at each
        position, or ``None`` (not rotary, or it does not say). Only read to draw the rotation
        (``llmbricks inspect positional``); ``rotate`` never depends on it."""
        return None

    def rotate(self, q: Tensor, k: Tensor, pos: PositionContext) -> tuple[Tensor, Tensor]:
        """Rotate the new queries and keys ``[B, H, T, hd]`` using ``pos.rotation``."""
        return q, k

    def bias(self, q_positions: Tensor, k_positions: Tensor) -> Tensor | None:
        """Additive attention-score bias ``[H, Tq, Tk]`` (relative kinds), or ``None``."""
        return None


class _TakesPositionContext(ModuleComponent):
    """``forward(x, pos, cache=None)``: what attention and blocks share about positions.

    Before ``PositionContext`` carried the rotation, these kinds were called as
    ``forward(x, positional, pos, cache)``. A subclass written that way still works: its
    ``forward`` is wrapped when the class is defined (with one deprecation warning), and a
    caller that still passes the positional module has it dropped.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        forward = cls.__dict__.get("forward")
        if forward is not None and "positional" in inspect.signature(forward).parameters:
            warn_deprecated(f"{cls.__module__}.{cls.__qualname__}.forward takes (x, positional, "
                            "pos, cache): take (x, pos, cache); pos.rotate(q, k) rotates")
            cls.forward = _legacy_forward(forward)

    def __call__(self, x: Tensor, *args: Any, **kwargs: Any) -> Any:
        if args and isinstance(args[0], PositionalEncoding):  # the old calling convention
            warn_deprecated(f"{self.kind} '{self.name}' called as (x, positional, pos, cache): "
                            "call it as (x, pos, cache)")
            args = args[1:]
        return super().__call__(x, *args, **kwargs)


def _context_knowing_its_maker(context: Callable[..., PositionContext]
                                ) -> Callable[..., PositionContext]:
    """An overridden ``context`` that forgot ``positional=self`` still rotates (with a warning)."""

    @functools.wraps(context)
    def made(self: PositionalEncoding, q_positions: Tensor, k_positions: Tensor) -> PositionContext:
        pos = context(self, q_positions, k_positions)
        if pos.positional is None and type(self).rotate is not PositionalEncoding.rotate:
            warn_deprecated(f"positional '{self.name}' overrides context() without "
                            "positional=self: rotations would be lost; pass positional=self")
            pos = dataclasses.replace(pos, positional=self)
        return pos

    return made


def _legacy_forward(forward: Callable[..., Tensor]) -> Callable[..., Tensor]:
    @functools.wraps(forward)
    def adapted(self: nn.Module, x: Tensor, pos: PositionContext,
                cache: LayerKVCache | None = None) -> Tensor:
        positional = pos.positional if pos.positional is not None else _NO_POSITIONAL
        return forward(self, x, positional, pos, cache)

    return adapted


class Attention(_TakesPositionContext):
    """Causal self-attention ``[B, T, D] -> [B, T, D]``. Built with ``(params, dims)``.

    ``forward(x, pos, cache=None)``: ``pos`` holds the positions of the ``T`` new tokens and of
    every key, with the score bias computed once for the pass; ``pos.rotate(q, k)`` rotates
    queries and keys (a no-op unless the positional kind is rotary); with a cache, keys and
    values of earlier tokens come from it. ``residual_projections`` names the output projection.
    """

    kind: ClassVar[str] = "attention"
    #: Whether ``forward`` honours a ``pos`` whose rows sit at their own positions
    #: (``pos.per_row``: mask by ``pos.hidden_keys``, which reads them; take a ``[B, H, Tq, Tk]`` bias). A
    #: component that does not say so is served one stream at a time, which is always right.
    per_row_positions: ClassVar[bool] = False

    @abstractmethod
    def forward(self, x: Tensor, pos: PositionContext,
                cache: LayerKVCache | None = None) -> Tensor: ...

    def attention_weights(self, x: Tensor, pos: PositionContext) -> Tensor | None:
        """The attention weights ``[B, H, T, T]`` this layer gives inputs ``x`` ``[B, T, D]`` at
        ``pos`` (no cache, no dropout; each row sums to 1 over the keys), or ``None`` when the
        kind cannot say (the default). Only read to look inside (``llmbricks inspect
        attention``): a fused kernel never forms these weights, so a kind recomputes them."""
        return None

    def kv_window(self) -> int | None:
        """How many of the latest keys (itself included) a query can see, or ``None`` for all.

        A sliding-window layer answers its window, so its KV cache keeps about that many
        positions instead of the whole generation; ``cache.update`` then returns the keys ending
        at the newest, and ``pos.last_keys(k_len)`` fits the positions and bias to them.
        """
        return None


class Norm(ModuleComponent):
    """Normalizes the last dimension. Built with ``(params, dims)``."""

    kind: ClassVar[str] = "norm"


class FeedForward(ModuleComponent):
    """Position-wise MLP ``[B, T, D] -> [B, T, D]``. Built with ``(params, dims)``.

    ``residual_projections`` names its last layer (the one whose output joins the residual).
    """

    kind: ClassVar[str] = "feedforward"


class Block(_TakesPositionContext):
    """One transformer block: ``forward(x, pos, cache=None)``, ``pos`` as attention takes it.

    Built with ``(params, dims, attention=..., norm=..., feedforward=...)``: each a zero-argument
    factory returning a fresh module, so the block decides how many it needs.
    """

    kind: ClassVar[str] = "block"

    @abstractmethod
    def forward(self, x: Tensor, pos: PositionContext,
                cache: LayerKVCache | None = None) -> Tensor: ...

    def kv_window(self) -> int | None:
        """The sliding window of the block's attention (its cache keeps that many keys), or
        ``None``. A block with no attention, or several that disagree, keeps every key."""
        windows = {m.kv_window() for m in self.modules() if isinstance(m, Attention)}
        return windows.pop() if len(windows) == 1 else None


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

    def output_weight(self) -> Tensor | None:
        """The ``[C, D]`` matrix that maps hidden states to outputs, or ``None`` if there is none.

        Tying shares it with the embedding (``tie``); parameter counts use it to report a model
        with and without that sharing. A head written before this method existed is read
        through a Linear layer named ``proj`` (as the built-in heads call theirs), with a warning.
        """
        proj = self._modules.get("proj")
        if isinstance(proj, nn.Linear):
            warn_deprecated(f"head '{self.name}' does not define output_weight(); using its "
                            "proj layer's weight")
            return proj.weight
        return None

    @property
    def num_classes(self) -> int | None:
        """How many classes a sequence head tells apart (``None`` for per-token heads).

        A sequence head written before this property existed is read through its
        ``params.num_classes``, with a warning. Subclasses override it or assign it.
        """
        if "_num_classes" in self.__dict__:
            return self.__dict__["_num_classes"]
        declared = getattr(self.params, "num_classes", None)
        if self.per_token or declared is None:
            return None
        warn_deprecated(f"head '{self.name}' does not define num_classes; using its "
                        "params.num_classes")
        return int(declared)

    @num_classes.setter
    def num_classes(self, value: int | None) -> None:
        self.__dict__["_num_classes"] = value
    #: Whether outputs for a right-padded row are unchanged by what the padding holds. Per-token
    #: heads: always (position ``t`` sees only tokens ``<= t``). A pooling head that reads the
    #: last position even when it is padding (the book's choice) says ``False``.
    ignores_padding: bool = True


_NO_POSITIONAL: PositionalEncoding  # set below, once the no-op class exists


@dataclass(frozen=True)
class ModelParts:
    """Factories for the parts a model assembles: each call returns a new module."""

    embedding: Callable[[], Embedding]
    positional: Callable[[], PositionalEncoding]
    block: Callable[[int], Block]
    norm: Callable[[], Norm]
    head: Callable[[], Head]
    #: Blocks that attend locally (Gemma's sliding-window layers), and their own positional
    #: encoding when it differs from ``positional`` (Gemma 3's local rope).
    local_layers: frozenset[int] = frozenset()
    local_positional: Callable[[], PositionalEncoding] | None = None


@dataclass(frozen=True)
class ModelLayout:
    """The parts of a built model that training and inference address by role, not by name.

    Freeze policies train ``head``, or the last of ``blocks`` with ``norm`` and ``head``; LoRA's
    default targets are the Linear layers inside ``blocks``; parameter counts compare the
    ``head``'s output weight with the ``embedding``'s table. ``norm`` is the final norm.
    """

    embedding: Embedding | None
    blocks: Sequence[nn.Module]
    norm: nn.Module | None
    head: Head


class Model(ModuleComponent):
    """The assembled network. Built with ``(params, dims, parts: ModelParts)``.

    ``layout()`` names its parts by role; ``positions_limit()`` is the longest sequence it can
    take. Nothing outside the model reads its attributes, so their names are the model's own.
    """

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

    def layout(self) -> ModelLayout:
        """This model's embedding, blocks, final norm and head.

        A model written before this contract existed is read through the attribute names of
        the GPT assembly (``embedding``, ``blocks``, ``norm``, ``head``), with a warning.
        """
        warn_deprecated(f"model '{self.name}' does not define layout(); reading its embedding, "
                        "blocks, norm and head attributes (define layout() to name its parts)")
        missing = [a for a in ("blocks", "head") if not isinstance(getattr(self, a, None), nn.Module)]
        if missing:
            raise TypeError(f"model '{self.name}' must define layout() (it has no "
                            f"{' or '.join(missing)} attribute to fall back on)")
        return ModelLayout(embedding=getattr(self, "embedding", None), blocks=list(self.blocks),
                           norm=getattr(self, "norm", None), head=self.head)

    def positions_limit(self) -> int | None:
        """The longest sequence this model can encode (a learned position table), or ``None``.

        A model written before this method existed is asked through its ``positional``
        attribute (as the GPT assembly names it), with a warning.
        """
        positional = self._modules.get("positional")
        if isinstance(positional, PositionalEncoding):
            warn_deprecated(f"model '{self.name}' does not define positions_limit(); asking its "
                            "positional attribute")
            return positional.positions_limit()
        return None

    def forward(self, ids: Tensor, positions: Tensor | None = None,
                cache: KVCache | None = None, *, lengths: Tensor | None = None) -> Tensor:
        """The head's outputs; ``lengths`` ``[B]`` (real tokens per right-padded row) reaches it."""
        hidden = self.hidden(ids, positions, cache)
        head = self.layout().head
        return head(hidden) if lengths is None else head(hidden, lengths=lengths)

    @abstractmethod
    def replace_head(self, head: Head) -> None: ...

    def new_cache(self, batch_size: int, max_len: int) -> KVCache:
        """A key/value cache for ``batch_size x max_len`` tokens; each sliding-window block's
        layer keeps only about its window."""
        weight = next(self.parameters())
        return KVCache(self.dims.n_layers, batch_size, self.dims.n_kv_heads, max_len,
                       self.dims.head_dim, dtype=weight.dtype, device=weight.device,
                       windows=self._kv_windows())

    def _kv_windows(self) -> list[int | None] | None:
        """Each block's window, in order; ``None`` when the model does not say (every layer
        keeps every key, which is always right)."""
        if type(self).layout is Model.layout:
            return None
        blocks = list(self.layout().blocks)
        if len(blocks) != self.dims.n_layers:
            return None
        return [b.kv_window() if isinstance(b, Block) else None for b in blocks]


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
    """Fits a model: supplies batches, a loss and an evaluation to ``core.train.loop``.

    Built with ``(params)``.
    """

    kind: ClassVar[str] = "trainer"

    def __init__(self, params: ParamsModel) -> None:
        self.params = params

    @abstractmethod
    def fit(self, session: Any) -> Mapping[str, Any]:
        """Train in ``session`` (a ``core.train.session.Session``: run, config, tokenizer, device...).

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
    #: A labeled source's classes in their order (class ``i`` is ``labels[i]``), if it knows them.
    labels: ClassVar[tuple[str, ...] | None] = None

    def __init__(self, params: ParamsModel) -> None:
        self.params = params

    @abstractmethod
    def __iter__(self) -> Iterator[Any]: ...

    def describe(self) -> str:
        """Where the data comes from (a path, a URL, a module), for reports and errors."""
        return self.name


class Optimizer(Component, ABC):
    """How gradients become updates: builds the ``torch.optim.Optimizer`` for a model.

    Built with ``(params)``. ``create`` receives the trainable model (its ``layout()`` says which
    parameters are hidden matrices, embedding, head, so routing never depends on names) and the
    run's shared settings; the learning rate is then set every step by the schedule, through each
    param group's ``lr`` (times the group's ``lr_scale`` when it has one). The optimizer's
    ``state_dict`` is checkpointed, so a resumed run continues exactly.
    """

    kind: ClassVar[str] = "optimizer"
    #: Floats of state kept per trainable parameter (AdamW: 2 moments), for the memory estimate.
    state_per_parameter: ClassVar[float] = 2.0

    def __init__(self, params: ParamsModel) -> None:
        self.params = params

    @abstractmethod
    def create(self, model: nn.Module, *, lr: float, weight_decay: float,
               betas: tuple[float, float], decay_embeddings: bool, device: torch.device,
               lr_scales: dict[str, float] | None = None) -> torch.optim.Optimizer:
        """The optimizer over ``model``'s trainable parameters (a tied tensor once).

        ``lr_scales`` (``train.embedding_lr_scale``, ``head_lr_scale``) are passed to
        ``core.train.optim.param_groups``, whose groups carry them as ``lr_scale``.
        """


class Schedule(Component, ABC):
    """The learning rate as a pure function of the step. Built with ``(params)``.

    Warmup is shared by every schedule (``train.warmup_steps``: ``lr (s + 1) / warmup``, so the
    last warmup step uses the peak); ``after_warmup`` is the rest of the curve. A pure function,
    so a resumed run gets the same rates without any saved state.
    """

    kind: ClassVar[str] = "schedule"

    def __init__(self, params: ParamsModel) -> None:
        self.params = params

    def rate(self, step: int, *, lr: float, total_steps: int, warmup_steps: int = 0,
             min_lr: float = 0.0) -> float:
        """The learning rate of optimizer step ``step`` (0-based) of ``total_steps``."""
        if step < warmup_steps:
            return lr * (step + 1) / warmup_steps
        return self.after_warmup(step, lr=lr, total_steps=total_steps,
                                 warmup_steps=warmup_steps, min_lr=min_lr)

    @abstractmethod
    def after_warmup(self, step: int, *, lr: float, total_steps: int, warmup_steps: int,
                     min_lr: float) -> float:
        """The rate at ``step >= warmup_steps``: starts at (or near) ``lr``."""


class Logger(Component, ABC):
    """Receives training events (step, eval, checkpoint, end). Built with ``(params)``."""

    kind: ClassVar[str] = "logger"

    def __init__(self, params: ParamsModel) -> None:
        self.params = params

    @abstractmethod
    def log(self, event: str, **fields: Any) -> None: ...

    def close(self) -> None:
        """Flush and release resources at the end of a run."""


class _NoPositional(PositionalEncoding):
    """What a legacy ``forward(x, positional, pos, cache)`` gets when nothing rotates."""

    name = "(none)"


_NO_POSITIONAL = _NoPositional.__new__(_NoPositional)
nn.Module.__init__(_NO_POSITIONAL)
