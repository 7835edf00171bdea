"""GPT-2 weights in Hugging Face's layout <-> llmbricks model directories.

A Hugging Face GPT-2 folder holds ``config.json`` and ``model.safetensors`` (or shards listed in
``model.safetensors.index.json``) with ``GPT2LMHeadModel``'s names, optionally without the
``transformer.`` prefix::

    transformer.wte.weight [V, D]           -> embedding.table.weight
    transformer.wpe.weight [P, D]           -> positional.table.weight
    transformer.h.{i}.ln_1.{weight,bias}    -> blocks.{i}.attn_norm.{weight,bias}
    transformer.h.{i}.attn.c_attn.weight    -> blocks.{i}.attn.{q,k,v}_proj.weight
    transformer.h.{i}.attn.c_proj.*         -> blocks.{i}.attn.out_proj.*
    transformer.h.{i}.ln_2.*                -> blocks.{i}.ff_norm.*
    transformer.h.{i}.mlp.c_fc.*            -> blocks.{i}.ff.up.*
    transformer.h.{i}.mlp.c_proj.*          -> blocks.{i}.ff.down.*
    transformer.ln_f.*                      -> norm.*
    lm_head.weight [V, D]                   -> head.proj.weight (absent when tied to wte)

GPT-2's projections are ``Conv1D`` layers: ``y = x W + b`` with ``W`` stored ``[in, out]``, the
transpose of ``nn.Linear``'s ``[out, in]``. ``c_attn`` packs the query, key and value projections
side by side along its output dimension: ``W_c_attn = [W_q^T | W_k^T | W_v^T]``, ``[D, 3D]``.

Nothing is downloaded: users bring the folder (e.g. ``huggingface-cli download gpt2``, or
``GPT2LMHeadModel.save_pretrained(dir)``). Only safetensors are read; a ``pytorch_model.bin``
would need unpickling, which llmbricks never does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from llmbricks.core.build import build_model, build_tokenizer, load_tokenizer
from llmbricks.core.config import Config, load_config
from llmbricks.core.errors import CheckpointError, ConfigError, LlmbricksError
from llmbricks.core.registry import Registry, get_registry
from llmbricks.core.store.atomic import atomic_directory, check_output_dir
from llmbricks.core.store.model_dir import (
    CONFIG_FILE,
    MODEL_KIND,
    TOKENIZER_DIR,
    load_model_dir,
    save_model_dir,
)

from .hf_folder import HF_CONFIG_FILE, HF_KIND, HF_WEIGHTS_FILE, read_json, weight_files

__all__ = [
    "ExportResult",
    "ImportResult",
    "check_exportable",
    "config_from_hf",
    "export_hf",
    "from_hf_state_dict",
    "hf_config_from",
    "import_gpt2",
    "read_hf_checkpoint",
    "read_hf_config",
    "read_hf_tensors",
    "to_hf_state_dict",
]

PREFIX = "transformer."
#: GPT-2's tokenizer: 50257 tokens, ``<|endoftext|>`` = 50256.
GPT2_VOCAB = 50257
GPT2_EOS = 50256
#: HF activations that are GPT-2's tanh approximation of GELU (all the same function).
TANH_GELUS = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")
#: HF's name for the exact GELU, x * Phi(x).
EXACT_GELU = "gelu"
#: GPT2Config's defaults, used for fields a config.json leaves out (as transformers does).
HF_DEFAULTS: dict[str, Any] = {
    "vocab_size": 50257, "n_positions": 1024, "n_embd": 768, "n_layer": 12, "n_head": 12,
    "n_inner": None, "activation_function": "gelu_new", "resid_pdrop": 0.1, "embd_pdrop": 0.1,
    "attn_pdrop": 0.1, "layer_norm_epsilon": 1e-5, "scale_attn_weights": True,
    "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False,
    "add_cross_attention": False, "tie_word_embeddings": True,
}
#: Fields that must keep GPT-2's standard value: anything else changes the maths.
REQUIRED_FLAGS: dict[str, bool] = {
    "scale_attn_weights": True,
    "scale_attn_by_inverse_layer_idx": False,
    "reorder_and_upcast_attn": False,
    "add_cross_attention": False,
}
#: Old checkpoints store the causal mask as buffers; they are not weights.
IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias")


@dataclass
class ImportResult:
    """Where an import wrote its model directory, the config it wrote, and what to know."""

    out: Path
    config: Config
    parameters: int
    notes: list[str] = field(default_factory=list)


@dataclass
class ExportResult:
    """Where an export wrote the Hugging Face folder, and the config.json it wrote."""

    out: Path
    hf_config: dict[str, Any]
    notes: list[str] = field(default_factory=list)


# --- reading a Hugging Face folder -------------------------------------------------------------


def _hf_value(hf_config: Mapping[str, Any], key: str) -> Any:
    value = hf_config.get(key)
    return HF_DEFAULTS.get(key) if value is None and key != "n_inner" else value


def _positive_int(hf_config: Mapping[str, Any], key: str, value: Any = None) -> int:
    value = _hf_value(hf_config, key) if value is None else value
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"config.json: {key} must be a positive integer, got {value!r}")
    return value


def _rate(hf_config: Mapping[str, Any], key: str) -> float:
    value = _hf_value(hf_config, key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ConfigError(f"config.json: {key} must be a number in [0, 1), got {value!r}")
    return float(value)


def config_from_hf(hf_config: Mapping[str, Any], *, attention: str = "sdpa") -> dict[str, Any]:
    """The llmbricks config (a raw mapping for ``load_config``) of a GPT-2 ``config.json``.

    Raises ``ConfigError`` naming the field when the checkpoint is not plain GPT-2 maths. The
    three dropout rates become one: ``resid_pdrop`` (they only matter for training).
    """
    model_type = hf_config.get("model_type")
    if model_type is not None and model_type != "gpt2":
        raise ConfigError(f"config.json: model_type '{model_type}' is not GPT-2 "
                          "(llmbricks imports model_type 'gpt2' only)")
    activation = _hf_value(hf_config, "activation_function")
    if activation not in (*TANH_GELUS, EXACT_GELU):
        raise ConfigError(f"config.json: activation_function '{activation}' is not supported "
                          f"(llmbricks' gelu feedforward is GPT-2's tanh GELU: {', '.join(TANH_GELUS)}, "
                          f"or the exact '{EXACT_GELU}')")
    for key, wanted in REQUIRED_FLAGS.items():
        value = _hf_value(hf_config, key)
        if bool(value) != wanted:
            raise ConfigError(f"config.json: {key}={json.dumps(value)} is not supported "
                              f"(llmbricks' GPT-2 needs {json.dumps(wanted)})")
    emb_dim = _positive_int(hf_config, "n_embd")
    n_heads = _positive_int(hf_config, "n_head")
    n_layers = _positive_int(hf_config, "n_layer")
    vocab = _positive_int(hf_config, "vocab_size")
    positions_key = "n_positions" if hf_config.get("n_positions") is not None else "n_ctx"
    context = hf_config.get(positions_key)  # old configs name the table size n_ctx
    context = _positive_int(hf_config, positions_key,
                            HF_DEFAULTS["n_positions"] if context is None else context)
    if emb_dim % n_heads:
        raise ConfigError(f"config.json: n_embd={emb_dim} is not divisible by n_head={n_heads}")
    eps = _hf_value(hf_config, "layer_norm_epsilon")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or eps <= 0:
        raise ConfigError(f"config.json: layer_norm_epsilon must be a positive number, got {eps!r}")
    feedforward: dict[str, Any] = {"name": "gelu", "hidden_mult": 4.0, "bias": True,
                                   "approximate": "none" if activation == EXACT_GELU else "tanh"}
    inner = hf_config.get("n_inner")
    if inner is not None:
        inner = _positive_int(hf_config, "n_inner", inner)
        mult = inner / emb_dim
        if int(round(emb_dim * mult)) != inner:  # float round trip of the hidden width
            raise ConfigError(f"config.json: n_inner={inner} cannot be written as a multiple of "
                              f"n_embd={emb_dim}")
        feedforward["hidden_mult"] = mult
    tied = _hf_value(hf_config, "tie_word_embeddings")
    for key in ("resid_pdrop", "embd_pdrop", "attn_pdrop"):
        _rate(hf_config, key)
    model: dict[str, Any] = {
        "vocab_size": vocab,
        "context_length": context,
        "emb_dim": emb_dim,
        "n_layers": n_layers,
        "n_heads": n_heads,
        "dropout": _rate(hf_config, "resid_pdrop"),
        # GPT-2's tokenizer when the vocabulary can hold it; anything smaller is a custom one.
        "tokenizer": {"name": "tiktoken", "encoding": "gpt2"} if vocab >= GPT2_VOCAB else None,
        "embedding": "token",
        "positional": "absolute",
        "attention": {"name": attention, "qkv_bias": True},
        "norm": {"name": "layernorm", "eps": float(eps), "bias": True},
        "feedforward": feedforward,
        "block": "gpt",
        "arch": {"name": "gpt", "init": "normal"},
        "head": {"name": "lm", "tie_weights": bool(tied)},
    }
    return {"model": model}


def read_hf_config(hf_dir: str | Path) -> dict[str, Any]:
    """The ``config.json`` of a Hugging Face folder, with clear errors for a missing folder/file."""
    root = Path(hf_dir)
    if not root.is_dir():
        raise CheckpointError(f"Hugging Face folder {root} does not exist (bring a folder with "
                              f"{HF_CONFIG_FILE} and {HF_WEIGHTS_FILE}; nothing is downloaded)")
    config_path = root / HF_CONFIG_FILE
    if not config_path.is_file():
        raise CheckpointError(f"{root} holds no {HF_CONFIG_FILE} (a Hugging Face GPT-2 folder "
                              f"has {HF_CONFIG_FILE} and {HF_WEIGHTS_FILE})")
    hf_config = read_json(config_path)
    if not isinstance(hf_config, dict):
        raise CheckpointError(f"{config_path}: expected a JSON object")
    return hf_config


def read_hf_tensors(hf_dir: str | Path) -> dict[str, Tensor]:
    """Every tensor of a Hugging Face folder (one file or index-listed shards), by name.

    Names lose their ``transformer.`` prefix, so ``GPT2LMHeadModel`` and ``GPT2Model`` layouts
    read the same. Only safetensors are read.
    """
    files = weight_files(Path(hf_dir))
    tensors: dict[str, Tensor] = {}
    for path in files:
        try:
            part = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{path} is not a readable safetensors file: {exc}") from None
        for name, tensor in part.items():
            tensors[name.removeprefix(PREFIX)] = tensor
    return tensors


def read_hf_checkpoint(hf_dir: str | Path) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """``(config.json, tensors)`` of a Hugging Face folder; tensor names lose ``transformer.``."""
    return read_hf_config(hf_dir), read_hf_tensors(hf_dir)


# --- weights -----------------------------------------------------------------------------------


def _hf_shapes(vocab: int, context: int, emb_dim: int, hidden: int, n_layers: int,
               tied: bool) -> dict[str, tuple[int, ...]]:
    """Every tensor a GPT-2 checkpoint of this shape holds (names without ``transformer.``)."""
    d = emb_dim
    shapes: dict[str, tuple[int, ...]] = {"wte.weight": (vocab, d), "wpe.weight": (context, d)}
    for i in range(n_layers):
        h = f"h.{i}."
        shapes.update({
            h + "ln_1.weight": (d,), h + "ln_1.bias": (d,),
            h + "attn.c_attn.weight": (d, 3 * d), h + "attn.c_attn.bias": (3 * d,),
            h + "attn.c_proj.weight": (d, d), h + "attn.c_proj.bias": (d,),
            h + "ln_2.weight": (d,), h + "ln_2.bias": (d,),
            h + "mlp.c_fc.weight": (d, hidden), h + "mlp.c_fc.bias": (hidden,),
            h + "mlp.c_proj.weight": (hidden, d), h + "mlp.c_proj.bias": (d,),
        })
    shapes["ln_f.weight"], shapes["ln_f.bias"] = (d,), (d,)
    if not tied:
        shapes["lm_head.weight"] = (vocab, d)
    return shapes


#: Per-layer tensors that map one to one: (llmbricks name, GPT-2 name, Conv1D-transposed).
#: The attention's q/k/v, packed into one ``c_attn`` in GPT-2, are handled apart.
LAYER_TENSORS: tuple[tuple[str, str, bool], ...] = (
    ("attn_norm.weight", "ln_1.weight", False),
    ("attn_norm.bias", "ln_1.bias", False),
    ("attn.out_proj.weight", "attn.c_proj.weight", True),
    ("attn.out_proj.bias", "attn.c_proj.bias", False),
    ("ff_norm.weight", "ln_2.weight", False),
    ("ff_norm.bias", "ln_2.bias", False),
    ("ff.up.weight", "mlp.c_fc.weight", True),
    ("ff.up.bias", "mlp.c_fc.bias", False),
    ("ff.down.weight", "mlp.c_proj.weight", True),
    ("ff.down.bias", "mlp.c_proj.bias", False),
)


def from_hf_state_dict(tensors: Mapping[str, Tensor], *, n_layers: int, tied: bool,
                       dtype: torch.dtype = torch.float32) -> dict[str, Tensor]:
    """GPT-2 tensors (names without ``transformer.``) -> llmbricks ``GPT`` state-dict names."""
    def get(name: str) -> Tensor:
        return tensors[name].to(dtype)

    out: dict[str, Tensor] = {
        "embedding.table.weight": get("wte.weight"),
        "positional.table.weight": get("wpe.weight"),
        "norm.weight": get("ln_f.weight"),
        "norm.bias": get("ln_f.bias"),
    }
    for i in range(n_layers):
        h, b = f"h.{i}.", f"blocks.{i}."
        # Conv1D stores [in, out]: transpose to nn.Linear's [out, in], then split q | k | v.
        q, k, v = get(h + "attn.c_attn.weight").t().chunk(3, dim=0)
        qb, kb, vb = get(h + "attn.c_attn.bias").chunk(3, dim=0)
        out.update({
            b + "attn.q_proj.weight": q, b + "attn.k_proj.weight": k, b + "attn.v_proj.weight": v,
            b + "attn.q_proj.bias": qb, b + "attn.k_proj.bias": kb, b + "attn.v_proj.bias": vb,
        })
        for ours, theirs, transposed in LAYER_TENSORS:
            tensor = get(h + theirs)
            out[b + ours] = tensor.t() if transposed else tensor
    out["head.proj.weight"] = out["embedding.table.weight"] if tied else get("lm_head.weight")
    return {name: t.contiguous() for name, t in out.items()}


def to_hf_state_dict(state: Mapping[str, Tensor], *, n_layers: int, tied: bool,
                     prefix: str = PREFIX) -> dict[str, Tensor]:
    """llmbricks ``GPT`` state-dict -> ``GPT2LMHeadModel`` names and layouts.

    Missing q/k/v and output biases (``qkv_bias: false``, ``out_bias: false``) are written as
    zeros: GPT-2 always has them, and a zero bias is the same function. Every tensor is a fresh contiguous copy (safetensors
    stores no views), and ``lm_head.weight`` is written only when the head is untied.
    """
    used: set[str] = set()

    def get(name: str) -> Tensor:
        used.add(name)
        return state[name].detach()

    def bias_or_zeros(name: str, size: int, like: Tensor) -> Tensor:
        return get(name) if name in state else torch.zeros(size, dtype=like.dtype, device=like.device)

    out: dict[str, Tensor] = {"wte.weight": get("embedding.table.weight"),
                              "wpe.weight": get("positional.table.weight")}
    for i in range(n_layers):
        h, b = f"h.{i}.", f"blocks.{i}."
        q, k, v = (get(b + f"attn.{p}_proj.weight") for p in "qkv")
        biases = [bias_or_zeros(b + f"attn.{p}_proj.bias", w.shape[0], w)
                  for p, w in zip("qkv", (q, k, v), strict=True)]
        out[h + "attn.c_attn.weight"] = torch.cat([q, k, v], dim=0).t()  # [D, 3D] = [Wq^T|Wk^T|Wv^T]
        out[h + "attn.c_attn.bias"] = torch.cat(biases)
        for ours, theirs, transposed in LAYER_TENSORS:
            if ours == "attn.out_proj.bias" and b + ours not in state:  # out_bias: false
                tensor = torch.zeros(out[h + "attn.c_attn.weight"].shape[0], dtype=q.dtype)
            else:
                tensor = get(b + ours)
            out[h + theirs] = tensor.t() if transposed else tensor
    out["ln_f.weight"], out["ln_f.bias"] = get("norm.weight"), get("norm.bias")
    head = get("head.proj.weight")
    extra = sorted(set(state) - used)
    if extra:
        shown = ", ".join(extra[:3]) + (f" (+{len(extra) - 3} more)" if len(extra) > 3 else "")
        raise ConfigError(f"the model has parameters GPT-2 has no place for: {shown}")
    result = {prefix + name: t.contiguous().clone() for name, t in out.items()}
    if not tied:
        result["lm_head.weight"] = head.contiguous().clone()
    return result


def _check_tensors(tensors: Mapping[str, Tensor], shapes: Mapping[str, tuple[int, ...]],
                   where: Path) -> None:
    names = {n for n in tensors if not n.endswith(IGNORED_SUFFIXES)}
    missing = [n for n in shapes if n not in names]
    if missing:
        hint = " (config.json says tie_word_embeddings: false)" if missing == ["lm_head.weight"] else ""
        raise CheckpointError(f"{where}: {len(missing)} GPT-2 tensor(s) missing, e.g. "
                              f"{_hf_name(missing[0])}{hint}")
    unexpected = sorted(names - set(shapes) - {"lm_head.weight"})
    if unexpected:
        raise CheckpointError(f"{where}: unexpected tensor {_hf_name(unexpected[0])} for a GPT-2 "
                              f"of this config.json ({len(unexpected)} in all; n_layer too small?)")
    for name, shape in shapes.items():
        if tuple(tensors[name].shape) != shape:
            raise CheckpointError(f"{where}: {_hf_name(name)} has shape {list(tensors[name].shape)}"
                                  f" but config.json implies {list(shape)}")
        if not tensors[name].is_floating_point():
            raise CheckpointError(f"{where}: {_hf_name(name)} is {tensors[name].dtype}, "
                                  "not a floating-point tensor")


def _hf_name(name: str) -> str:
    return name if name.startswith("lm_head.") else PREFIX + name


# --- import --------------------------------------------------------------------------------


def import_gpt2(hf_dir: str | Path, out: str | Path, *, overwrite: bool = False,
                attention: str = "sdpa", registry: Registry | None = None) -> ImportResult:
    """Convert a Hugging Face GPT-2 folder into a llmbricks model directory at ``out``.

    Weights are converted to float32. The tokenizer (tiktoken's gpt2) is saved beside them when
    the vocabulary is GPT-2's and its files can be found offline; otherwise a note says why not.
    """
    registry = registry or get_registry()
    check_output_dir(out, overwrite=overwrite, kind=MODEL_KIND)
    hf_config = read_hf_config(hf_dir)  # config errors first, before reading any weights
    config = load_config(config_from_hf(hf_config, attention=attention), registry=registry)
    tensors = read_hf_tensors(hf_dir)
    m = config.model
    tied = bool(m.head.params.get("tie_weights", True))
    hidden = int(round(m.emb_dim * m.feedforward.params["hidden_mult"]))
    weights = Path(hf_dir) / HF_WEIGHTS_FILE
    _check_tensors(tensors, _hf_shapes(int(m.vocab_size), m.context_length, m.emb_dim, hidden,
                                       m.n_layers, tied), weights)
    notes: list[str] = []
    if tied and "lm_head.weight" in tensors and not torch.equal(tensors["lm_head.weight"],
                                                                tensors["wte.weight"]):
        notes.append("lm_head.weight differs from wte.weight but config.json ties them; "
                     "used wte.weight, as transformers does")
    state = from_hf_state_dict(tensors, n_layers=m.n_layers, tied=tied)
    model = build_model(config, registry, device="cpu")
    model.load_state_dict(state, strict=True)
    model.eval()
    tokenizer = None
    if m.tokenizer is None:
        notes.append(f"vocab_size {m.vocab_size} is smaller than GPT-2's {GPT2_VOCAB}: no "
                     "tokenizer set; set model.tokenizer in config.yaml to the one it was trained with")
    else:
        try:
            tokenizer = build_tokenizer(config, registry)
        except LlmbricksError as exc:
            notes.append(f"tokenizer not saved (config.yaml still names it): {exc}")
    save_model_dir(out, config, model, tokenizer, overwrite=overwrite)
    parameters = sum(p.numel() for p in model.parameters())  # shared tensors count once
    return ImportResult(out=Path(out), config=config, parameters=parameters, notes=notes)


# --- export --------------------------------------------------------------------------------


def component_of(config: Config, key: str, registry: Registry) -> tuple[str, dict[str, Any]]:
    """The plain registered name and params of ``model.<key>`` (``plugin:name`` -> ``name``)."""
    spec = getattr(config.model, key)
    kind = {"arch": "model"}.get(key, key)
    try:
        name = registry.get(kind, spec.name).name
    except LlmbricksError:
        name = spec.name.rpartition(":")[2]
    return name, dict(spec.params)


def check_exportable(config: Config, registry: Registry | None = None) -> None:
    """Raise ``ConfigError`` naming the first component that GPT-2's layout cannot hold."""
    registry = registry or get_registry()
    needed = {"arch": "gpt", "embedding": "token", "positional": "absolute", "norm": "layernorm",
              "feedforward": "gelu", "block": "gpt", "head": "lm"}
    for key, wanted in needed.items():
        name, _ = component_of(config, key, registry)
        if name != wanted:
            raise ConfigError(f"model.{key}: '{name}' cannot be exported to GPT-2 "
                              f"(it needs '{wanted}')")
    name, params = component_of(config, "attention", registry)
    if name not in ("mha", "sdpa"):
        raise ConfigError(f"model.attention: '{name}' cannot be exported to GPT-2 "
                          "(it needs 'mha' or 'sdpa')")
    kv = params.get("n_kv_heads")
    if kv is not None and kv != config.model.n_heads:
        raise ConfigError(f"model.attention.n_kv_heads: {kv} cannot be exported to GPT-2 (it "
                          f"needs full multi-head attention: unset or {config.model.n_heads})")
    for key in ("norm", "feedforward"):
        _, params = component_of(config, key, registry)
        if params.get("bias") is False:
            raise ConfigError(f"model.{key}.bias: false cannot be exported to GPT-2 "
                              "(it needs biases)")
    refuse_unexported_params(config, GPT2_PLAIN_PARAMS, "GPT-2")
    if config.model.vocab_size == "auto":
        raise ConfigError("model.vocab_size: 'auto' cannot be exported; it needs a number")


#: Params whose non-default values change the maths a layout has no field for: (slot, param,
#: the value the layout computes). Shared by every exporter that writes a plain decoder.
PLAIN_PARAMS: tuple[tuple[str, str, Any], ...] = (
    ("embedding", "scale", "none"),
    ("head", "softcap", None),
    ("block", "placement", "pre"),
    ("norm", "offset", 0.0),
    ("attention", "qk_norm", "none"),
)
GPT2_PLAIN_PARAMS = (*PLAIN_PARAMS, ("attention", "window", None))


def refuse_unexported_params(config: Config, plain: tuple[tuple[str, str, Any], ...],
                             layout: str) -> None:
    """Raise ``ConfigError`` naming the first param whose value ``layout`` cannot write."""
    for key, param, wanted in plain:
        value = getattr(config.model, key).params.get(param, wanted)
        if value != wanted:
            raise ConfigError(f"model.{key}.{param}: {json.dumps(value)} cannot be exported to "
                              f"{layout} (it needs {json.dumps(wanted)})")


def _eos_id(tokenizer: Any) -> int | None:
    if tokenizer is None:
        return None
    return tokenizer.special_tokens.get("<|endoftext|>")


def hf_config_from(config: Config, *, eos_token_id: int | None = None) -> dict[str, Any]:
    """The ``config.json`` of the GPT-2 a (GPT-2-compatible) llmbricks config describes."""
    m = config.model
    hidden = int(round(m.emb_dim * m.feedforward.params.get("hidden_mult", 4.0)))
    tied = bool(m.head.params.get("tie_weights", True))
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": int(m.vocab_size),
        "n_positions": m.context_length,
        "n_ctx": m.context_length,
        "n_embd": m.emb_dim,
        "n_layer": m.n_layers,
        "n_head": m.n_heads,
        "n_inner": None if hidden == 4 * m.emb_dim else hidden,
        "activation_function": (EXACT_GELU if m.feedforward.params.get("approximate") == "none"
                                else "gelu_new"),
        "resid_pdrop": m.dropout,
        "embd_pdrop": m.dropout,
        "attn_pdrop": m.dropout,
        "layer_norm_epsilon": float(m.norm.params.get("eps", 1e-5)),
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "tie_word_embeddings": tied,
        "bos_token_id": eos_token_id,
        "eos_token_id": eos_token_id,
        "use_cache": True,
        "dtype": "float32",
    }


def export_hf(model_dir: str | Path, out: str | Path, *, overwrite: bool = False,
              registry: Registry | None = None) -> ExportResult:
    """Write a llmbricks model directory as a Hugging Face GPT-2 folder.

    ``out`` gets ``config.json`` and ``model.safetensors`` that
    ``transformers.GPT2LMHeadModel.from_pretrained(out)`` loads. Only GPT-2-compatible configs
    can be exported; for others a ``ConfigError`` names the component in the way.
    """
    registry = registry or get_registry()
    root = Path(model_dir)
    config_file = root / CONFIG_FILE
    if not config_file.is_file():
        if not root.is_dir():
            raise CheckpointError(f"model directory {root} does not exist")
        raise CheckpointError(f"{root} is not a llmbricks model directory: {CONFIG_FILE} is missing")
    check_output_dir(out, overwrite=overwrite, kind=HF_KIND)
    check_exportable(load_config(config_file, registry=registry), registry)
    config, model, _ = load_model_dir(root, registry=registry, with_tokenizer=False)
    notes: list[str] = []
    tokenizer = None
    if (root / TOKENIZER_DIR).is_dir():
        try:
            tokenizer = load_tokenizer(root / TOKENIZER_DIR, registry)
        except LlmbricksError as exc:
            notes.append(f"tokenizer not read, eos_token_id left unset: {exc}")
    m = config.model
    tied = bool(m.head.params.get("tie_weights", True))
    tensors = to_hf_state_dict(model.state_dict(), n_layers=m.n_layers, tied=tied)
    eos = _eos_id(tokenizer)
    if eos is not None and eos >= int(m.vocab_size):
        eos = None
    hf_config = hf_config_from(config, eos_token_id=eos)
    with atomic_directory(out, overwrite=overwrite, kind=HF_KIND) as tmp:
        save_file({n: t.cpu() for n, t in tensors.items()}, str(tmp / HF_WEIGHTS_FILE),
                  metadata={"format": "pt"})
        (tmp / HF_CONFIG_FILE).write_text(json.dumps(hf_config, indent=2) + "\n", encoding="utf-8")
    return ExportResult(out=Path(out), hf_config=hf_config, notes=notes)
