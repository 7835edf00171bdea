"""The config: pydantic models for ``model``, ``data``, ``train``, ``seed`` and the run name.

Loading goes file -> dotted overrides -> preset expansion -> schema validation -> every component
spec validated against its own ``Params`` -> cross-field checks. The result is a *resolved*
config: every default is written out, and dumping it to YAML and loading it back gives an equal
config.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
    model_validator,
)

from .component import ComponentSpec, Dims, StrictNumbers
from .config_io import dump_yaml, parse_yaml, read_config_file
from .errors import ComponentError, ConfigError, did_you_mean
from .plugin_guard import first_line
from .registry import Registry, describe_validation_error, get_registry

Spec = Annotated[
    ComponentSpec,
    BeforeValidator(ComponentSpec.parse),
    PlainSerializer(ComponentSpec.to_data, return_type=dict),
]


#: Upper bounds far above any real model, below where an integer overflows torch or a float
#: turns into nonsense; a value past one is a typo, refused when the config loads.
MAX_SEED = 2**63 - 1          # torch.manual_seed takes a signed 64-bit integer
MAX_CONTEXT = 1 << 24         # 16M positions
MAX_EMB_DIM = 1 << 17         # 131072
MAX_LAYERS = 10_000
MAX_HEADS = 1 << 14
MAX_VOCAB = 1 << 24           # 16.7M tokens
MAX_BATCH = 1 << 24
MAX_STEPS = 10**12
MAX_TOKENS = 10**16
MAX_EPOCHS = 10**6
MAX_SEEDS = 10_000            # runs per ablation variant

class Section(StrictNumbers):
    """Base of every config section: unknown keys are errors, numbers are finite and never bools."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(Section):
    """The network's shape and the component that fills each slot."""

    preset: str | None = None
    vocab_size: Annotated[int, Field(ge=1, le=MAX_VOCAB)] | Literal["auto"] = "auto"
    context_length: int = Field(256, ge=1, le=MAX_CONTEXT)
    emb_dim: int = Field(384, ge=1, le=MAX_EMB_DIM)
    n_layers: int = Field(6, ge=1, le=MAX_LAYERS)
    n_heads: int = Field(6, ge=1, le=MAX_HEADS)
    head_dim: int | None = Field(None, ge=1, le=MAX_EMB_DIM, description="one attention head's "
                                 "width; unset = emb_dim / n_heads (Qwen3 and Gemma set it apart)")
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    tokenizer: Spec | None = None
    embedding: Spec = ComponentSpec(name="token")
    positional: Spec = ComponentSpec(name="absolute")
    attention: Spec = ComponentSpec(name="sdpa")
    norm: Spec = ComponentSpec(name="layernorm")
    feedforward: Spec = ComponentSpec(name="gelu")
    block: Spec = ComponentSpec(name="gpt")
    arch: Spec = ComponentSpec(name="gpt")
    head: Spec = ComponentSpec(name="lm")
    local_layers: list[Annotated[int, Field(ge=0, lt=MAX_LAYERS)]] = Field(
        default_factory=list, description="indices of the blocks that use local_attention and "
        "local_positional instead of attention and positional (Gemma's sliding-window layers)")
    local_attention: Spec | None = Field(None, description="the attention of the local layers "
                                         "(e.g. {name: sdpa, window: 4096}); null = attention")
    local_positional: Spec | None = Field(None, description="the positional encoding of the local "
                                          "layers (Gemma 3: rope with theta 10000); null = positional")
    adapters: list[Spec] = Field(default_factory=list, description="applied in order after the "
                                 "model is built (e.g. [{name: lora, r: 16}]); their tensors are "
                                 "checkpointed apart from the base weights")

    @property
    def n_kv_heads(self) -> int:
        """Key/value heads: the attention's ``n_kv_heads`` param when set (GQA), else ``n_heads``."""
        value = self.attention.params.get("n_kv_heads")
        return int(value) if value else self.n_heads

    def dims(self, vocab_size: int | None = None) -> Dims:
        """The frozen shape object every module is built with."""
        vocab = vocab_size if vocab_size is not None else self.vocab_size
        if vocab == "auto":
            tok = self.tokenizer.name if self.tokenizer else None
            raise ConfigError(
                "model.vocab_size is 'auto' but "
                + (f"tokenizer '{tok}' learns its vocabulary from data" if tok else "no model.tokenizer is set")
                + "; set model.vocab_size to a number or build the model with a trained tokenizer")
        return Dims(vocab_size=int(vocab), context_length=self.context_length,
                    emb_dim=self.emb_dim, n_heads=self.n_heads, n_kv_heads=self.n_kv_heads,
                    n_layers=self.n_layers, dropout=self.dropout, head_size=self.head_dim)


class DataConfig(Section):
    """Where training text comes from and how it is cut into windows."""

    source: Spec = ComponentSpec(name="python_docs")
    prompt: Spec | None = Field(None, description="the prompt template instruction records are "
                                "formatted with (e.g. alpaca, phi3); null = the trainer's default")
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    stride: int | None = Field(None, ge=1, le=MAX_CONTEXT, description="window stride; unset = "
                               "context_length")
    sampler: Literal["sliding", "random"] = "sliding"
    shuffle: bool = True
    drop_last: bool = True
    cache_dir: str | None = Field(None, description="token caches; unset = $LLMBRICKS_CACHE_DIR/tokens "
                                  "(default ~/.cache/llmbricks/tokens)")


class TrainConfig(Section):
    """How the model is trained: the trainer, the optimizer, the schedule, the budget, the run."""

    trainer: Spec = ComponentSpec(name="pretrain")
    init_from: str | None = Field(None, description="start from these weights: a run directory "
                                  "(its newest checkpoint) or a model directory (`import gpt2`); "
                                  "a different model.head starts fresh")
    trainable: Literal["auto", "all", "last_block", "head", "none"] = Field(
        "auto", description="which base weights train: all; last_block (last block, final norm, "
        "head: the book's ch. 6); head; none (adapters only). auto = none with adapters, else "
        "the trainer's default (classify: last_block; pretrain, instruct: all). Adapter tensors "
        "always train")
    # Budget: training stops at the first one reached. Setting epochs or max_tokens without
    # max_steps clears the max_steps default.
    max_steps: int | None = Field(2000, ge=1, le=MAX_STEPS)
    epochs: float | None = Field(None, gt=0.0, le=MAX_EPOCHS, description="passes over the "
                                 "training windows")
    max_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS, description="training tokens "
                                   "(all ranks)")
    batch_size: int = Field(32, ge=1, le=MAX_BATCH, description="windows per optimizer step and "
                            "rank, before gradient accumulation")
    grad_accum: int = Field(1, ge=1, le=MAX_BATCH, description="micro-batches summed into one "
                            "optimizer step")
    optimizer: Spec = Field(ComponentSpec(name="adamw"), description="how gradients become "
                            "updates: adamw (default), sgd, lion, muon; lr, weight_decay, betas "
                            "and decay_embeddings below are shared by all")
    lr: float = Field(1.0e-3, gt=0.0, description="peak learning rate")
    embedding_lr_scale: float = Field(1.0, gt=0.0, le=1e4, description="the embedding table's "
                                      "learning rate as a multiple of lr (by the model's layout)")
    head_lr_scale: float = Field(1.0, gt=0.0, le=1e4, description="the head's learning rate as a "
                                 "multiple of lr (a head tied to the embedding takes the "
                                 "embedding's)")
    min_lr: float = Field(0.0, ge=0.0, description="where cosine decay ends")
    weight_decay: float = Field(0.1, ge=0.0, description="on matrices only (see decay_embeddings)")
    decay_embeddings: bool = Field(False, description="also decay embedding tables")
    betas: tuple[Annotated[float, Field(ge=0.0, lt=1.0)], Annotated[float, Field(ge=0.0, lt=1.0)]] = (
        0.9, 0.999)
    warmup_steps: int = Field(100, ge=0, le=MAX_STEPS, description="linear warmup from 0 to lr")
    schedule: Spec = Field(ComponentSpec(name="cosine"), description="the learning rate after "
                           "warmup: cosine (default), constant, linear, wsd, inverse_sqrt")
    grad_clip: float | None = Field(1.0, gt=0.0, description="max global grad norm; null = off")
    on_nonfinite: Literal["stop", "skip"] = Field(
        "stop", description="a NaN or infinite loss or gradient norm: stop (keep the last good "
        "checkpoint) or skip that optimizer step (stop after 10 in a row)")
    # Evaluation and samples
    eval_every: int = Field(200, ge=1, le=MAX_STEPS)
    eval_batches: int = Field(20, ge=1, le=MAX_BATCH, description="batches per split per evaluation")
    sample_prompt: str | None = Field(None, description="continued at each evaluation into "
                                      "samples.txt; null = no samples")
    sample_tokens: int = Field(50, ge=1, le=MAX_CONTEXT)
    # Run
    checkpoint_every: int | None = Field(
        None, ge=1, le=MAX_STEPS, description="steps between checkpoints; null = at each "
        "evaluation (and at the end)")
    keep_checkpoints: int = Field(3, ge=1, le=MAX_STEPS, description="newest checkpoints kept on disk")
    log_every: int = Field(10, ge=1, le=MAX_STEPS, description="steps between step events")
    precision: Literal["fp32", "bf16", "auto"] = Field(
        "fp32", description="bf16 = autocast; auto = bf16 where the device runs it faster (a "
        "CUDA GPU with native bf16), else fp32; the choice is recorded in the manifest")
    compile: bool = Field(False, description="torch.compile the model for training")
    device: str = Field("auto", description="auto = cuda when available, else cpu")
    loggers: list[Spec] = [ComponentSpec(name="console"), ComponentSpec(name="jsonl")]

    @model_validator(mode="after")
    def _budget(self) -> TrainConfig:
        explicit = self.model_fields_set
        if "max_steps" not in explicit and ({"epochs", "max_tokens"} & explicit):
            object.__setattr__(self, "max_steps", None)
        if self.max_steps is None and self.epochs is None and self.max_tokens is None:
            raise ValueError("no training budget: set max_steps, epochs or max_tokens")
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr {self.min_lr} is above lr {self.lr}; lower min_lr")
        return self


class AblationConfig(Section):
    """A grid of variants compared over seeds (``llmbricks ablate``); its CLI flags override it."""

    grid: dict[str, list[Any]] = Field(default_factory=dict, description="dotted config path -> "
                                       "the values to try, e.g. {model.positional: [rope, alibi]}")
    variants: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="named variants instead of a grid, each a set of "
        "changes: {no-rope: {model.positional: absolute}, base: {}} (leave-one-out ablations)")
    seeds: int = Field(1, ge=1, le=MAX_SEEDS, description="runs per variant, with seeds seed, "
                       "seed+1, ...")
    vary: Literal["all", "init", "data"] = Field(
        "all", description="what changes from seed to seed: all (the initialisation, the data "
        "order and dropout), init (the data order stays the first seed's), data (the "
        "initialisation and dropout stay the first seed's)")
    baseline: str | None = Field(None, description="the variant the others are compared with "
                                 "(its name or its value); null = the first variant")
    match: Literal["steps", "tokens", "flops", "time"] = Field(
        "steps", description="what every variant gets as much of as the baseline's budget: steps "
        "(each keeps its own budget), tokens, flops (6N + 12LHQT per token) or time (measured "
        "seconds per step); each variant then trains budget / its cost per step")

    @field_validator("grid")
    @classmethod
    def _known_paths(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        """A grid path must name a config field, as a --set path must (``config validate``)."""
        for path in grid:
            try:
                check_path(path, "path")
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return grid

    @field_validator("variants")
    @classmethod
    def _known_variant_paths(cls, variants: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """A variant is named like a directory and changes fields that exist."""
        for name, changes in variants.items():
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._=,+-]{0,119}", name):
                raise ValueError(f"variant name {name!r}: use letters, digits and ._=,+- (it "
                                 "names the variant's directory)")
            for path in changes:
                try:
                    check_path(path, f"variant {name}")
                except ConfigError as exc:
                    raise ValueError(str(exc)) from None
        return variants


class SeedSources(Section):
    """The sources of run-to-run variance that ``seed`` controls, each settable on its own.

    Unset, each follows ``seed``. Fixing one while ``seed`` changes isolates the others: an
    ablation with ``--vary data`` gives its seeds one initialisation and different data orders.
    """

    init: int | None = Field(None, ge=0, le=MAX_SEED, description="the weights' "
                             "initialisation (torch's generator before the model is built); "
                             "null = seed")
    data: int | None = Field(None, ge=0, le=MAX_SEED, description="the data: the order of "
                             "training windows or examples and the classify/instruct splits; "
                             "null = seed")
    dropout: int | None = Field(None, ge=0, le=MAX_SEED, description="dropout masks (torch's "
                                "generator reseeded once the model is built); null = it goes on "
                                "from the initialisation's stream")


class Config(Section):
    """A whole experiment: the model, its data, its training, a seed and a run name."""

    name: str | None = None
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    seed: int = Field(123, ge=0, le=MAX_SEED)
    seed_sources: SeedSources | None = Field(None, description="fix the initialisation, data "
                                             "or dropout seed apart from seed (null: all follow "
                                             "seed)")
    ablation: AblationConfig | None = None

    @property
    def init_seed(self) -> int:
        """The seed of the weights' initialisation."""
        chosen = self.seed_sources.init if self.seed_sources is not None else None
        return self.seed if chosen is None else chosen

    @property
    def data_seed(self) -> int:
        """The seed of the data order and of data splits."""
        chosen = self.seed_sources.data if self.seed_sources is not None else None
        return self.seed if chosen is None else chosen

    @property
    def dropout_seed(self) -> int | None:
        """The seed dropout reseeds with after the build; None: the init stream goes on."""
        return self.seed_sources.dropout if self.seed_sources is not None else None

    def seed_record(self) -> dict[str, int | str]:
        """What a run's manifest records: each source's seed."""
        dropout = self.dropout_seed
        return {"init": self.init_seed, "data": self.data_seed,
                "dropout": dropout if dropout is not None else "init stream"}

    @model_validator(mode="after")
    def _seeds_fit(self) -> Config:
        """An ablation's last seed (seed + seeds - 1) must still be a valid seed."""
        if self.ablation is not None and self.seed + self.ablation.seeds - 1 > MAX_SEED:
            raise ValueError(f"seed {self.seed} + ablation.seeds {self.ablation.seeds} runs past the "
                             f"largest seed ({MAX_SEED}); lower seed")
        return self

    def to_data(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        for optional in ("ablation", "seed_sources"):  # only configs that set them carry them
            if data.get(optional) is None:
                data.pop(optional, None)
        return data

    def to_yaml(self) -> str:
        return dump_yaml(self.to_data())


#: Config fields that hold one component spec: (section, field) -> kind.
COMPONENT_FIELDS: dict[tuple[str, str], str] = {
    ("model", "tokenizer"): "tokenizer",
    ("model", "embedding"): "embedding",
    ("model", "positional"): "positional",
    ("model", "attention"): "attention",
    ("model", "norm"): "norm",
    ("model", "feedforward"): "feedforward",
    ("model", "block"): "block",
    ("model", "arch"): "model",
    ("model", "head"): "head",
    ("model", "local_attention"): "attention",
    ("model", "local_positional"): "positional",
    ("data", "source"): "datasource",
    ("data", "prompt"): "prompt",
    ("train", "trainer"): "trainer",
    ("train", "optimizer"): "optimizer",
    ("train", "schedule"): "schedule",
}
#: Config fields that hold a list of component specs.
COMPONENT_LIST_FIELDS: dict[tuple[str, str], str] = {("model", "adapters"): "adapter",
                                                     ("train", "loggers"): "logger"}
SECTIONS: dict[str, type[Section]] = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig,
                                      "ablation": AblationConfig}


# --- loading ----------------------------------------------------------------------------------


def load_config(source: str | Path | Mapping[str, Any] | None = None,
                overrides: Iterable[str] = (), registry: Registry | None = None) -> Config:
    """Load, override, expand presets, validate and resolve a config.

    ``source`` is a file path (YAML, TOML or JSON), a mapping, or ``None`` for the defaults.
    ``overrides`` are ``dotted.path=value`` strings; values are parsed as YAML.
    """
    if source is None:
        raw: dict[str, Any] = {}
    elif isinstance(source, Mapping):
        raw = copy.deepcopy(dict(source))
    else:
        raw = read_config_file(source)
    for override in overrides:
        path, value = parse_override(override)
        set_path(raw, path, value)
    return resolve_config(raw, registry)


def parse_override(text: str) -> tuple[str, Any]:
    """``"model.n_layers=2"`` -> ``("model.n_layers", 2)``; the value is parsed as YAML."""
    path, sep, value = text.partition("=")
    path = path.strip()
    if not sep or not path:
        raise ConfigError(f"override '{text}' must look like dotted.path=value "
                          "(e.g. --set model.n_layers=2)")
    return path, parse_yaml(value, f"--set {path}") if value.strip() else None


def _is_component(section: str, key: str) -> bool:
    return (section, key) in COMPONENT_FIELDS


def check_path(path: str, option: str = "--set") -> list[str]:
    """Split a dotted override path and check it names a config field (or a component param).

    ``option`` is where the path came from, for the error (``--set``, ``--grid``).
    """
    parts = path.split(".")
    top = list(Config.model_fields)
    head = parts[0]
    if head not in top:
        raise ConfigError(f"{option} {path}: unknown config path '{head}'{did_you_mean(head, top)} "
                          f"(top-level fields: {', '.join(top)})")
    if head not in SECTIONS:
        if len(parts) > 1:
            raise ConfigError(f"{option} {path}: '{head}' is a single value and has no field '{parts[1]}'")
        return parts
    if len(parts) == 1:
        return parts
    fields = list(SECTIONS[head].model_fields)
    key = parts[1]
    if key not in fields:
        hint = did_you_mean(key, fields)
        hint = hint.replace("'", f"'{head}.", 1) if hint else ""
        raise ConfigError(f"{option} {path}: unknown config path '{head}.{key}'{hint} "
                          f"(fields of {head}: {', '.join(fields)})")
    if len(parts) > 2 and not _is_component(head, key):
        raise ConfigError(f"{option} {path}: '{head}.{key}' is a single value and has no field "
                          f"'{parts[2]}'")
    return parts


def set_path(raw: dict[str, Any], path: str, value: Any) -> None:
    """Set ``value`` at ``path`` in a raw config dict.

    Inside a component spec, a bare name becomes ``{name: ...}`` so a param can be set, and
    giving the spec a new name drops the old component's params.
    """
    parts = check_path(path)
    node = raw
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if depth == 1 and _is_component(parts[0], part):
            if isinstance(child, str):
                child = {"name": child}
            elif isinstance(child, ComponentSpec):
                child = child.to_data()
            elif not isinstance(child, dict):  # null, or a value a spec cannot be: start afresh
                child = {}
            if parts[2] == "name" and len(parts) == 3 and child.get("name") not in (None, value):
                child = {}
        elif not isinstance(child, dict):
            child = {}
        node[part] = child
        node = child
    if len(parts) == 2 and _is_component(*parts):
        value = merge_spec(node.get(parts[-1]), value)  # a new name drops the old params
    node[parts[-1]] = value


def merge_spec(base: Any, over: Any) -> Any:
    """Layer a component spec over another.

    The same name (or no name) keeps the lower layer's params and adds the new ones; a new name
    replaces the spec whole, so the old component's params are dropped.
    """
    if base is None or not isinstance(over, (str, Mapping)):
        return over
    try:
        base_spec = ComponentSpec.parse(base)
    except ValueError:
        return over
    name = over if isinstance(over, str) else over.get("name")
    if name is None or name == base_spec.name:
        extra = {} if isinstance(over, str) else over
        return {**base_spec.to_data(), **extra, "name": base_spec.name}
    return over if isinstance(over, str) else dict(over)


def merge_section(section: str, lower: Mapping[str, Any], upper: Mapping[str, Any]) -> dict[str, Any]:
    """``upper`` wins field by field; component specs merge as in ``merge_spec``."""
    out = dict(lower)
    for key, value in upper.items():
        if _is_component(section, key) and key in out:
            out[key] = merge_spec(out[key], value)
        else:
            out[key] = value
    return out


def _defaults_for_partial_specs(section: str, data: dict[str, Any]) -> dict[str, Any]:
    """A spec written without a name (``positional: {theta: 5}``) takes the field's default."""
    model = SECTIONS[section]
    for key, value in list(data.items()):
        if _is_component(section, key) and isinstance(value, Mapping) and "name" not in value:
            default = model.model_fields[key].default
            if isinstance(default, ComponentSpec):
                data[key] = merge_spec(default, value)
    return data


def resolve_config(raw: Mapping[str, Any], registry: Registry | None = None) -> Config:
    """Validate a raw config dict and resolve every component spec against the registry."""
    registry = registry or get_registry()
    raw = copy.deepcopy(dict(raw))
    for section in SECTIONS:
        if section not in raw:
            continue
        value = raw[section]
        if value is None:  # `model:` with nothing under it, `--set model=null`: the defaults
            del raw[section]
        elif not isinstance(value, Mapping):
            raise ConfigError(f"{section}: expected a mapping of fields (or null for the defaults), "
                              f"got {type(value).__name__} {_short(value)}")
        else:
            raw[section] = dict(value)
    model_raw = raw.get("model", {})
    preset = model_raw.get("preset")
    if preset is not None:
        try:
            fragment = registry.preset(str(preset))
        except ComponentError as exc:
            raise ConfigError(f"model.preset: {exc}") from None
        model_raw = merge_section("model", fragment, model_raw)
    raw["model"] = model_raw
    for section in SECTIONS:
        if section in raw:
            raw[section] = _defaults_for_partial_specs(section, dict(raw[section]))
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe_schema_error(exc)) from None
    _resolve_components(config, registry)
    _check_model(config.model, registry)
    return config


def _short(value: Any, limit: int = 60) -> str:
    """A value's repr cut to one short line, for an error message."""
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _describe_schema_error(exc: ValidationError) -> str:
    loc = exc.errors()[0]["loc"]
    model: type[BaseModel] = Config
    prefix: list[str] = []
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            break
        model = field.annotation
        prefix.append(str(part))
    owner = f"section '{'.'.join(prefix)}'" if prefix else "the config"
    text = describe_validation_error(exc, owner=owner, fields=list(model.model_fields))
    return text.replace("unknown parameter", "unknown field").replace("(parameters:", "(fields:")


def _resolve_components(config: Config, registry: Registry) -> None:
    for (section, key), kind in COMPONENT_FIELDS.items():
        holder = getattr(config, section)
        spec = getattr(holder, key)
        if spec is not None:
            setattr(holder, key, registry.resolve(kind, spec, f"{section}.{key}"))
    for (section, key), kind in COMPONENT_LIST_FIELDS.items():
        holder = getattr(config, section)
        specs = getattr(holder, key)
        setattr(holder, key, [registry.resolve(kind, s, f"{section}.{key}[{i}]")
                              for i, s in enumerate(specs)])


def _check_model(model: ModelConfig, registry: Registry) -> None:
    """Cross-field checks that would otherwise fail deep inside torch."""
    if model.head_dim is None and model.emb_dim % model.n_heads:
        lower = model.emb_dim - model.emb_dim % model.n_heads
        raise ConfigError(
            f"model.emb_dim: {model.emb_dim} is not divisible by model.n_heads={model.n_heads}; "
            f"use a multiple of n_heads (e.g. {lower} or {lower + model.n_heads})")
    kv = model.attention.params.get("n_kv_heads")
    if kv is not None and (kv < 1 or model.n_heads % kv):
        raise ConfigError(
            f"model.attention.n_kv_heads: {kv} must divide model.n_heads={model.n_heads} "
            "(each key/value head serves n_heads / n_kv_heads query heads)")
    if model.tokenizer is not None:
        name = model.tokenizer.name
        tok_cls = registry.get("tokenizer", name)
        known = registry.call_component("tokenizer", name, "known_vocab_size()",
                                        tok_cls.known_vocab_size,
                                        tok_cls.Params.model_validate(model.tokenizer.params))
        if known is not None:
            if model.vocab_size == "auto":
                model.vocab_size = known
            elif model.vocab_size < known:
                raise ConfigError(
                    f"model.vocab_size: {model.vocab_size} is smaller than the vocabulary of "
                    f"tokenizer '{model.tokenizer.name}' ({known}); use vocab_size: auto or >= {known}")
    _check_local_layers(model)
    dims = model.dims(vocab_size=0 if model.vocab_size == "auto" else None)
    for key, kind in COMPONENT_FIELDS.items():
        if key[0] != "model" or kind == "tokenizer":
            continue
        spec = getattr(model, key[1])
        if spec is None:
            continue
        cls = registry.get(kind, spec.name)
        try:
            registry.call_component(kind, spec.name, "check()", cls.check,
                                    cls.Params.model_validate(spec.params), dims)
        except ComponentError as exc:  # check() refused the dims: say which field of the config
            reason = first_line(exc.__cause__) if isinstance(exc.__cause__, ValueError) else exc
            raise ConfigError(f"model.{key[1]}: {reason}") from None


def _check_local_layers(model: ModelConfig) -> None:
    """Local layers must exist, once each, and share the cache's key/value head count."""
    layers = model.local_layers
    outside = [i for i in layers if i >= model.n_layers]
    if outside:
        raise ConfigError(f"model.local_layers: {outside[0]} is not a block of this model "
                          f"(n_layers {model.n_layers}: 0 to {model.n_layers - 1})")
    if len(set(layers)) != len(layers):
        raise ConfigError(f"model.local_layers: {layers} names a block twice")
    local = model.local_attention
    if local is not None:
        kv = local.params.get("n_kv_heads") or model.n_heads
        if kv != model.n_kv_heads:
            raise ConfigError(f"model.local_attention.n_kv_heads: {kv} differs from the other "
                              f"layers' {model.n_kv_heads}; every layer shares the KV cache's shape")
    if (local is not None or model.local_positional is not None) and not layers:
        raise ConfigError("model.local_attention/local_positional are set but model.local_layers "
                          "is empty; list the blocks that use them")


def default_config(preset: str | None = None, registry: Registry | None = None) -> Config:
    """The resolved default config, optionally starting from a model preset."""
    return load_config({"model": {"preset": preset}} if preset else {}, registry=registry)
