"""Llama-shaped checkpoints (Llama 2/3/3.1/3.2, Mistral, Qwen2/3, OLMo 2, Gemma 2/3, Phi-3) <->
llmbricks model directories.

Each family is the GPT assembly with other components, so importing one is two tables of data:
the config fields each family's ``config.json`` holds (:data:`FAMILIES`: defaults, what must
keep a value we implement), and the tensor names (:data:`LAYER_NAMES`), the same for all three::

    model.embed_tokens.weight                    -> embedding.table.weight
    model.layers.{i}.input_layernorm.weight      -> blocks.{i}.attn_norm.weight        (RMSNorm)
    model.layers.{i}.self_attn.{q,k,v}_proj.*    -> blocks.{i}.attn.{q,k,v}_proj.*     (GQA)
    model.layers.{i}.self_attn.o_proj.*          -> blocks.{i}.attn.out_proj.*
    model.layers.{i}.post_attention_layernorm.*  -> blocks.{i}.ff_norm.*
    model.layers.{i}.mlp.{gate,up,down}_proj.*   -> blocks.{i}.ff.{gate,up,down}.*     (SwiGLU)
    model.norm.weight                            -> norm.weight
    lm_head.weight                               -> head.proj.weight  (absent when tied)

Both layouts store ``nn.Linear`` weights ``[out, in]``, and rotary embeddings use the same
"rotate half" pairing, so every tensor is copied as is: no transposes, no permutations. Phi-3
fuses two groups of projections along their output rows, split on import and joined on export::

    model.layers.{i}.self_attn.qkv_proj.weight   = [W_q; W_k; W_v]   (h + 2 kv) * hd rows
    model.layers.{i}.mlp.gate_up_proj.weight     = [W_gate; W_up]    2 * intermediate rows

A field we do not implement (another activation, a rope scaling we lack, a sliding window
shorter than the context, per-layer attention types) is refused in one line naming it: never a
silently different model. The model is built on the meta device and filled one tensor at a time
from the memory-mapped files, so an import holds one copy of the weights.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from llmbricks.core.build import build_model
from llmbricks.core.component import ComponentSpec
from llmbricks.core.config import Config, load_config
from llmbricks.core.errors import CheckpointError, ConfigError
from llmbricks.core.interfaces import Tokenizer
from llmbricks.core.registry import Registry, get_registry
from llmbricks.core.store.atomic import atomic_directory, check_output_dir
from llmbricks.core.store.model_dir import (
    CONFIG_FILE,
    MODEL_KIND,
    TOKENIZER_DIR,
    load_model_dir,
    save_model_dir,
)

from .gpt2_hf import PLAIN_PARAMS, component_of, refuse_unexported_params
from .hf_folder import HF_CONFIG_FILE, HF_KIND, HF_WEIGHTS_FILE, HFWeights, read_json

__all__ = [
    "FAMILIES",
    "HF_SOURCE_FILE",
    "Family",
    "config_from_llama",
    "export_llama",
    "hf_name",
    "import_llama",
    "llama_config_from",
]

#: The source's config.json, kept in the model directory so an export writes the same family.
HF_SOURCE_FILE = "hf_config.json"
#: A Hugging Face folder's tokenizer, carried into the model directory as the ``hf`` component.
HF_TOKENIZER_FILE = "tokenizer.json"


@dataclass(frozen=True)
class Family:
    """One Hugging Face family of the Llama shape: its class, defaults and fixed values."""

    model_type: str
    architecture: str
    #: transformers' defaults for the fields a config.json may leave out.
    defaults: Mapping[str, Any]
    #: q/k/v bias and output bias, when the family fixes them (None: read ``attention_bias``).
    qkv_bias: bool | None = None
    out_bias: bool | None = None
    #: Fields that must keep a value (anything else changes the maths we implement).
    required: Mapping[str, Any] = field(default_factory=dict)
    #: Phi-3 packs q/k/v into ``qkv_proj`` and gate/up into ``gate_up_proj``.
    fused: bool = False
    #: Whether ``partial_rotary_factor`` (rotating the first part of each head) is the family's.
    partial_rotary: bool = False
    #: Query/key RMSNorm: "head" (Qwen3: over each head) or "full" (OLMo 2: over the projection).
    qk_norm: str = "none"
    #: Where the block's norms sit: "pre" (Llama), "post" (OLMo 2: after each sublayer) or
    #: "sandwich" (Gemma: before and after).
    placement: str = "pre"
    #: Gemma's generation (2 or 3): GeGLU, 1 + w norms, sqrt(d) embeddings, local layers.
    gemma: int = 0

    @property
    def layer_names(self) -> dict[str, str]:
        """llmbricks name -> Hugging Face name, per layer, for this family's block."""
        return {"pre": LAYER_NAMES, "post": POST_NORM_NAMES,
                "sandwich": SANDWICH_NAMES}[self.placement]


_COMMON = {"hidden_act": "silu", "rms_norm_eps": 1e-6, "tie_word_embeddings": False,
           "rope_theta": 10000.0, "num_key_value_heads": None, "head_dim": None}

_GEMMA_DEFAULTS = {**_COMMON, "vocab_size": 256000, "hidden_size": 2304, "intermediate_size": 9216,
                   "num_hidden_layers": 26, "num_attention_heads": 8, "num_key_value_heads": 4,
                   "head_dim": 256, "max_position_embeddings": 8192, "tie_word_embeddings": True,
                   "attention_bias": False, "hidden_activation": "gelu_pytorch_tanh",
                   "query_pre_attn_scalar": 256, "sliding_window": 4096,
                   "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0}

FAMILIES: dict[str, Family] = {
    "llama": Family("llama", "LlamaForCausalLM",
                    {**_COMMON, "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008,
                     "num_hidden_layers": 32, "num_attention_heads": 32,
                     "max_position_embeddings": 2048, "attention_bias": False, "mlp_bias": False},
                    required={"mlp_bias": False}),
    "mistral": Family("mistral", "MistralForCausalLM",
                      {**_COMMON, "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 14336,
                       "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
                       "max_position_embeddings": 4096 * 32, "sliding_window": 4096},
                      qkv_bias=False, out_bias=False),
    "qwen2": Family("qwen2", "Qwen2ForCausalLM",
                    {**_COMMON, "vocab_size": 151936, "hidden_size": 4096, "intermediate_size": 22016,
                     "num_hidden_layers": 32, "num_attention_heads": 32,
                     "max_position_embeddings": 32768, "use_sliding_window": False},
                    qkv_bias=True, out_bias=False, required={"use_sliding_window": False}),
    "qwen3": Family("qwen3", "Qwen3ForCausalLM",
                    {**_COMMON, "vocab_size": 151936, "hidden_size": 4096, "intermediate_size": 22016,
                     "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32,
                     "head_dim": 128, "max_position_embeddings": 32768, "attention_bias": False,
                     "use_sliding_window": False},
                    required={"use_sliding_window": False}, qk_norm="head"),
    "olmo2": Family("olmo2", "Olmo2ForCausalLM",
                    {**_COMMON, "vocab_size": 50304, "hidden_size": 4096, "intermediate_size": 11008,
                     "num_hidden_layers": 32, "num_attention_heads": 32,
                     "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "attention_bias": False},
                    qk_norm="full", placement="post"),
    "gemma2": Family("gemma2", "Gemma2ForCausalLM", _GEMMA_DEFAULTS, placement="sandwich", gemma=2),
    "gemma3_text": Family("gemma3_text", "Gemma3ForCausalLM",
                          {**_GEMMA_DEFAULTS, "rope_theta": 1_000_000.0, "rope_local_base_freq": 10000.0,
                           "attn_logit_softcapping": None, "final_logit_softcapping": None,
                           "sliding_window_pattern": 6},
                          placement="sandwich", qk_norm="head", gemma=3),
    "phi3": Family("phi3", "Phi3ForCausalLM",
                   {**_COMMON, "vocab_size": 32064, "hidden_size": 3072, "intermediate_size": 8192,
                    "num_hidden_layers": 32, "num_attention_heads": 32,
                    "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "sliding_window": None},
                   qkv_bias=False, out_bias=False, fused=True, partial_rotary=True),
}

#: Per-layer tensors: llmbricks name after ``blocks.{i}.`` -> Hugging Face name after
#: ``model.layers.{i}.``. Biases and query/key norms appear only when the config has them.
_PROJECTIONS: dict[str, str] = {
    "attn.q_proj.weight": "self_attn.q_proj.weight",
    "attn.q_proj.bias": "self_attn.q_proj.bias",
    "attn.k_proj.weight": "self_attn.k_proj.weight",
    "attn.k_proj.bias": "self_attn.k_proj.bias",
    "attn.v_proj.weight": "self_attn.v_proj.weight",
    "attn.v_proj.bias": "self_attn.v_proj.bias",
    "attn.out_proj.weight": "self_attn.o_proj.weight",
    "attn.out_proj.bias": "self_attn.o_proj.bias",
    "attn.q_norm.weight": "self_attn.q_norm.weight",
    "attn.k_norm.weight": "self_attn.k_norm.weight",
    "ff.gate.weight": "mlp.gate_proj.weight",
    "ff.up.weight": "mlp.up_proj.weight",
    "ff.down.weight": "mlp.down_proj.weight",
}
#: Pre-norm blocks (Llama, Mistral, Qwen, Phi-3): HF's "post_attention_layernorm" is the norm
#: before the feed-forward.
LAYER_NAMES: dict[str, str] = {"attn_norm.weight": "input_layernorm.weight",
                               "ff_norm.weight": "post_attention_layernorm.weight", **_PROJECTIONS}
#: Sandwich blocks (Gemma 2/3): a norm before and after each sublayer.
SANDWICH_NAMES: dict[str, str] = {"attn_norm.weight": "input_layernorm.weight",
                                  "attn_post_norm.weight": "post_attention_layernorm.weight",
                                  "ff_norm.weight": "pre_feedforward_layernorm.weight",
                                  "ff_post_norm.weight": "post_feedforward_layernorm.weight",
                                  **_PROJECTIONS}
#: Post-norm blocks (OLMo 2): the norms follow attention and the feed-forward.
POST_NORM_NAMES: dict[str, str] = {"attn_post_norm.weight": "post_attention_layernorm.weight",
                                   "ff_post_norm.weight": "post_feedforward_layernorm.weight",
                                   **_PROJECTIONS}
GLOBAL_NAMES: dict[str, str] = {
    "embedding.table.weight": "model.embed_tokens.weight",
    "norm.weight": "model.norm.weight",
    "head.proj.weight": "lm_head.weight",
}
#: Phi-3's fused tensors: their parts, in row order.
FUSED_NAMES: dict[str, tuple[str, ...]] = {
    "self_attn.qkv_proj.weight": ("attn.q_proj.weight", "attn.k_proj.weight", "attn.v_proj.weight"),
    "mlp.gate_up_proj.weight": ("ff.gate.weight", "ff.up.weight"),
}
_PART_OF = {part: fused for fused, parts in FUSED_NAMES.items() for part in parts}
#: Buffers some checkpoints carry that are not weights (recomputed from the config).
IGNORED_SUFFIXES = (".rotary_emb.inv_freq",)


def hf_name(ours: str, family: Family | None = None) -> str:
    """The Hugging Face name of an llmbricks parameter of a Llama-shaped model (default: Llama's).

    In Phi-3, q/k/v and gate/up name the fused tensor they are rows of.
    """
    family = family or FAMILIES["llama"]
    if ours in GLOBAL_NAMES:
        return GLOBAL_NAMES[ours]
    _, index, rest = ours.split(".", 2)  # blocks.{i}.rest
    if family.fused and rest in _PART_OF:
        return f"model.layers.{index}.{_PART_OF[rest]}"
    names = family.layer_names
    if rest not in names:
        raise ConfigError(f"the model has a parameter the {family.model_type} layout has no place "
                          f"for: {ours}")
    return f"model.layers.{index}.{names[rest]}"


def hf_layout(ours: Mapping[str, tuple[int, ...]], family: Family,
              ) -> dict[str, list[tuple[str, tuple[int, ...]]]]:
    """Each Hugging Face tensor with the llmbricks parameters it holds, in row order."""
    layout: dict[str, list[tuple[str, tuple[int, ...]]]] = {}
    for name, shape in ours.items():
        layout.setdefault(hf_name(name, family), []).append((name, shape))
    for parts in layout.values():  # fused rows follow FUSED_NAMES' order (q, k, v; gate, up)
        parts.sort(key=lambda part: _fused_rank(part[0]))
    return layout


def _fused_rank(ours: str) -> int:
    rest = ours.split(".", 2)[-1]
    fused = _PART_OF.get(rest)
    return FUSED_NAMES[fused].index(rest) if fused else 0


def _joined_shape(parts: list[tuple[str, tuple[int, ...]]]) -> tuple[int, ...]:
    first = parts[0][1]
    return (sum(shape[0] for _, shape in parts), *first[1:])


# --- config.json -> llmbricks config ---------------------------------------------------------------


def _family(hf: Mapping[str, Any]) -> Family:
    model_type = hf.get("model_type")
    if model_type not in FAMILIES:
        known = ", ".join(["gpt2", *FAMILIES])
        raise ConfigError(f"config.json: model_type {json.dumps(model_type)} is not supported "
                          f"(llmbricks imports: {known})")
    return FAMILIES[model_type]


def _value(hf: Mapping[str, Any], family: Family, key: str) -> Any:
    value = hf.get(key)
    return family.defaults.get(key) if value is None else value


def _int(hf: Mapping[str, Any], family: Family, key: str) -> int:
    value = _value(hf, family, key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"config.json: {key} must be a positive integer, got {value!r}")
    return value


def _number(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"config.json: {key} must be a finite number, got {value!r}")
    return float(value)


def _rope(hf: Mapping[str, Any], family: Family, params: Any = None,
          theta_key: str = "rope_theta") -> dict[str, Any]:
    """The rope component of ``rope_parameters`` (transformers 5) or ``rope_theta``/``rope_scaling``.

    ``params`` is one layer type's rope parameters (Gemma 3 keeps one set per type).
    """
    if params is None:
        params = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    if not isinstance(params, Mapping):
        raise ConfigError(f"config.json: rope_parameters must be an object, got {params!r}")
    theta = _number(params.get("rope_theta", _value(hf, family, theta_key)), "rope_theta")
    kind = params.get("rope_type", params.get("type", "default"))
    rope: dict[str, Any] = {"name": "rope", "theta": theta}
    fraction = params.get("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0))
    if fraction != 1.0:
        if not family.partial_rotary:
            raise ConfigError(f"config.json: partial_rotary_factor {fraction} is not supported for "
                              f"{family.model_type}")
        rope["rotary_fraction"] = _number(fraction, "partial_rotary_factor")
    if kind == "default":
        return rope
    if kind == "linear":
        return {**rope, "scaling": "linear", "scaling_factor": _number(params.get("factor"), "factor")}
    if kind == "llama3":
        original = params.get("original_max_position_embeddings")
        if isinstance(original, bool) or not isinstance(original, int) or original < 1:
            raise ConfigError("config.json: rope llama3 scaling needs original_max_position_embeddings, "
                              f"got {original!r}")
        return {**rope, "scaling": "llama3", "scaling_factor": _number(params.get("factor"), "factor"),
                "low_freq_factor": _number(params.get("low_freq_factor"), "low_freq_factor"),
                "high_freq_factor": _number(params.get("high_freq_factor"), "high_freq_factor"),
                "original_context": original}
    raise ConfigError(f"config.json: rope_type {json.dumps(kind)} is not supported "
                      "(llmbricks' rope implements default, linear and llama3)")


def config_from_llama(hf: Mapping[str, Any], *, attention: str = "sdpa") -> dict[str, Any]:
    """The llmbricks config (a raw mapping for ``load_config``) of a Llama-shaped ``config.json``.

    Raises ``ConfigError`` naming the first field whose value llmbricks does not implement.
    """
    family = _family(hf)
    for key, wanted in family.required.items():
        if _value(hf, family, key) != wanted:
            raise ConfigError(f"config.json: {key}={json.dumps(hf.get(key))} is not supported "
                              f"for {family.model_type} (llmbricks needs {json.dumps(wanted)})")
    act_key = "hidden_activation" if family.gemma and "hidden_act" not in hf else "hidden_act"
    act = hf.get("hidden_activation") or hf.get("hidden_act") or family.defaults.get(act_key) \
        or family.defaults.get("hidden_act")
    wanted_act = ("gelu_pytorch_tanh",) if family.gemma else ("silu",)
    if act not in wanted_act:
        raise ConfigError(f"config.json: {act_key} {json.dumps(act)} is not supported for "
                          f"{family.model_type} (llmbricks' {'geglu' if family.gemma else 'swiglu'} "
                          f"uses {wanted_act[0]})")
    emb, heads = _int(hf, family, "hidden_size"), _int(hf, family, "num_attention_heads")
    layers, context = _int(hf, family, "num_hidden_layers"), _int(hf, family, "max_position_embeddings")
    kv = hf.get("num_key_value_heads") or family.defaults.get("num_key_value_heads") or heads
    if isinstance(kv, bool) or not isinstance(kv, int) or kv < 1 or heads % kv:
        raise ConfigError(f"config.json: num_key_value_heads {kv!r} must divide "
                          f"num_attention_heads {heads}")
    head_dim = hf.get("head_dim")
    if head_dim is not None and (isinstance(head_dim, bool) or not isinstance(head_dim, int)
                                 or head_dim < 1):
        raise ConfigError(f"config.json: head_dim must be a positive integer, got {head_dim!r}")
    if head_dim is None and emb % heads:
        raise ConfigError(f"config.json: hidden_size {emb} is not divisible by num_attention_heads "
                          f"{heads} and no head_dim is given")
    window = hf.get("sliding_window") if family.model_type in ("mistral", "phi3") else None
    if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window < 1):
        raise ConfigError(f"config.json: sliding_window must be a positive integer, got {window!r}")
    types = hf.get("layer_types")
    if types is not None and family.gemma:
        pass  # sliding and full layers: local_layers below
    elif types is not None and any(t != "full_attention" for t in types):
        raise ConfigError(f"config.json: layer_types {types} holds attention other than "
                          "full_attention, which llmbricks does not support yet")
    bias = _value(hf, family, "attention_bias")
    qkv_bias = family.qkv_bias if family.qkv_bias is not None else bool(bias)
    out_bias = family.out_bias if family.out_bias is not None else bool(bias)
    eps = _number(_value(hf, family, "rms_norm_eps"), "rms_norm_eps")
    model: dict[str, Any] = {
        "vocab_size": _int(hf, family, "vocab_size"),
        "context_length": context,
        "emb_dim": emb,
        "n_layers": layers,
        "n_heads": heads,
        "head_dim": None if head_dim in (None, emb // heads) and not emb % heads else head_dim,
        "dropout": 0.0,
        "tokenizer": None,
        "embedding": "token",
        "positional": _rope(hf, family),
        "attention": {"name": attention, "n_kv_heads": kv, "qkv_bias": qkv_bias, "out_bias": out_bias,
                      "window": window if window is not None and window < context else None,
                      **({"qk_norm": family.qk_norm, "qk_norm_eps": eps}
                         if family.qk_norm != "none" else {})},
        "norm": {"name": "rmsnorm", "eps": eps},
        "feedforward": {"name": "swiglu", "hidden": _int(hf, family, "intermediate_size")},
        "block": {"name": "gpt", "placement": family.placement} if family.placement != "pre" else "gpt",
        "arch": {"name": "gpt", "init": "normal"},
        "head": {"name": "lm", "tie_weights": bool(_value(hf, family, "tie_word_embeddings"))},
    }
    if family.gemma:
        _gemma(hf, family, model, eps)
    return {"model": model}


def _nullable(hf: Mapping[str, Any], family: Family, key: str) -> Any:
    """A field whose ``null`` means off (soft-capping): absent takes the family's default."""
    return hf[key] if key in hf else family.defaults.get(key)


def _gemma(hf: Mapping[str, Any], family: Family, model: dict[str, Any], eps: float) -> None:
    """Gemma 2/3 on top of the Llama shape: every part they change, from ``config.json``.

    ``h = embed(ids) * sqrt(d)``; each block norms before and after attention and the
    feed-forward, with RMSNorm scaling by ``1 + w``; the feed-forward is GeGLU; scores are
    ``q.k / sqrt(query_pre_attn_scalar)`` (Gemma 2 caps them at ``50 tanh(s / 50)``); sliding
    layers (``layer_types``) attend to the last ``sliding_window`` keys, with their own rope in
    Gemma 3; the logits are capped (Gemma 2: ``30 tanh(z / 30)``).
    """
    if hf.get("use_bidirectional_attention"):
        raise ConfigError("config.json: use_bidirectional_attention is not supported (llmbricks' "
                          "models are causal)")
    layers = model["n_layers"]
    types = hf.get("layer_types")
    if types is None:  # older configs: Gemma 2 alternates from a sliding layer, Gemma 3 has 5:1
        pattern = 2 if family.gemma == 2 else int(_value(hf, family, "sliding_window_pattern"))
        types = ["sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(layers)]
    if len(types) != layers or any(t not in ("sliding_attention", "full_attention") for t in types):
        raise ConfigError(f"config.json: layer_types must give sliding_attention or full_attention "
                          f"for each of the {layers} layers, got {types}")
    scalar = _number(_value(hf, family, "query_pre_attn_scalar"), "query_pre_attn_scalar")
    softcap = _nullable(hf, family, "attn_logit_softcapping")
    attention = {**model["attention"], "scale": scalar ** -0.5,
                 "softcap": None if softcap is None else _number(softcap, "attn_logit_softcapping")}
    if family.qk_norm != "none":
        attention.update(qk_norm_offset=1.0)
    window = hf.get("sliding_window", family.defaults["sliding_window"])
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ConfigError(f"config.json: sliding_window must be a positive integer, got {window!r}")
    local = [i for i, kind in enumerate(types) if kind == "sliding_attention"]
    model.update(
        embedding={"name": "token", "scale": "sqrt_dim"},
        norm={"name": "rmsnorm", "eps": eps, "offset": 1.0},
        feedforward={"name": "geglu", "hidden": model["feedforward"]["hidden"]},
        attention=attention,
        local_layers=local,
        local_attention={**attention, "window": window if window < model["context_length"] else None}
        if local else None,
    )
    final = _nullable(hf, family, "final_logit_softcapping")
    model["head"] = {**model["head"], "softcap": None if final is None else
                     _number(final, "final_logit_softcapping")}
    if family.gemma == 3:
        params = hf.get("rope_parameters") or {}
        if isinstance(params, Mapping) and "full_attention" in params:  # transformers 5: per type
            model["positional"] = _rope(hf, family, params["full_attention"])
            local_rope = _rope(hf, family, params.get("sliding_attention") or {},
                               theta_key="rope_local_base_freq")
        else:  # rope_theta (+ rope_scaling) for full layers, rope_local_base_freq for sliding ones
            local_rope = {"name": "rope", "theta": _number(
                _value(hf, family, "rope_local_base_freq"), "rope_local_base_freq")}
        model["local_positional"] = local_rope if local else None


# --- import ------------------------------------------------------------------------------------


@dataclass
class LlamaImport:
    """What ``import_llama`` wrote."""

    out: Path
    config: Config
    family: str
    parameters: int
    notes: list[str] = field(default_factory=list)


def _check_tensors(weights: HFWeights, expected: Mapping[str, tuple[int, ...]], tied: bool) -> None:
    names = {n for n in weights if not n.endswith(IGNORED_SUFFIXES)}
    missing = [n for n in expected if n not in names]
    if missing:
        hint = " (config.json says tie_word_embeddings: false)" if missing == ["lm_head.weight"] else ""
        raise CheckpointError(f"{weights.root}: {len(missing)} tensor(s) missing, e.g. {missing[0]}{hint}")
    extra = sorted(names - set(expected) - ({"lm_head.weight"} if tied else set()))
    if extra:
        raise CheckpointError(f"{weights.root}: unexpected tensor {extra[0]} for this config.json "
                              f"({len(extra)} in all; a bias or a layer the config does not declare)")
    for name, shape in expected.items():
        if weights.shape(name) != shape:
            raise CheckpointError(f"{weights.root}: {name} has shape {list(weights.shape(name))} "
                                  f"but config.json implies {list(shape)}")
        if not weights.is_float(name):
            raise CheckpointError(f"{weights.root}: {name} is not a floating-point tensor")


def import_llama(hf_dir: str | Path, out: str | Path, *, overwrite: bool = False,
                 attention: str = "sdpa", registry: Registry | None = None) -> LlamaImport:
    """Convert a Llama-shaped Hugging Face folder into a llmbricks model directory at ``out``.

    Weights become float32. The source's ``config.json`` is kept beside them
    (``hf_config.json``), so ``export hf`` writes the same family back.
    """
    registry = registry or get_registry()
    check_output_dir(out, overwrite=overwrite, kind=MODEL_KIND)
    root = Path(hf_dir)
    hf = read_json(root / HF_CONFIG_FILE)
    if not isinstance(hf, dict):
        raise CheckpointError(f"{root / HF_CONFIG_FILE}: expected a JSON object")
    family = _family(hf)
    config = load_config(config_from_llama(hf, attention=attention), registry=registry)
    weights = HFWeights(root)
    model = build_model(config, registry, device="meta")
    tied = bool(config.model.head.params.get("tie_weights"))
    ours = {n: tuple(p.shape) for n, p in model.state_dict().items()
            if not (tied and n == "head.proj.weight")}
    layout = hf_layout(ours, family)
    _check_tensors(weights, {name: _joined_shape(parts) for name, parts in layout.items()}, tied)
    notes: list[str] = []
    if tied and "lm_head.weight" in weights:
        notes.append("lm_head.weight is in the folder but config.json ties it to the embedding; "
                     "used model.embed_tokens.weight, as transformers does")
    # One tensor at a time from the memory-mapped files into the meta model: one copy in memory.
    state: dict[str, torch.Tensor] = {}
    for name, parts in layout.items():
        tensor = weights.get(name, torch.float32)
        if len(parts) == 1:
            state[parts[0][0]] = tensor
            continue
        pieces = tensor.split([shape[0] for _, shape in parts])  # fused rows: own storage each
        state.update((n, piece.clone()) for (n, _), piece in zip(parts, pieces, strict=True))
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    if unexpected or set(missing) - {"head.proj.weight"}:  # the tied head is the embedding
        raise CheckpointError(f"{root}: the weights do not fill the model ({(missing + unexpected)[:3]})")
    model.head.tie(model.embedding.weight)
    del state
    model.eval()
    tokenizer = _folder_tokenizer(root, config, registry, notes)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / HF_SOURCE_FILE
        source.write_text(json.dumps(hf, indent=2) + "\n", encoding="utf-8")
        save_model_dir(out, config, model, tokenizer, overwrite=overwrite, extra_files=[source])
    parameters = sum(p.numel() for p in model.parameters())
    return LlamaImport(out=Path(out), config=config, family=family.model_type,
                       parameters=parameters, notes=notes)


def _folder_tokenizer(root: Path, config: Config, registry: Registry,
                      notes: list[str]) -> Tokenizer | None:
    """The folder's own tokenizer (``tokenizer.json``) as the ``hf`` component, or ``None``.

    The model directory's config names ``hf`` without a path: its ``tokenizer/`` folder holds
    the files, so the directory needs nothing from the source afterwards.
    """
    if not (root / HF_TOKENIZER_FILE).is_file():
        notes.append(f"{root} has no {HF_TOKENIZER_FILE}: no tokenizer imported; generate, train "
                     "and eval need one (set model.tokenizer in config.yaml)")
        return None
    tokenizer = registry.build("tokenizer", {"name": "hf", "path": str(root)})
    if tokenizer.vocab_size > int(config.model.vocab_size):
        raise CheckpointError(f"{root / HF_TOKENIZER_FILE} has {tokenizer.vocab_size} tokens but "
                              f"the model's vocabulary is {config.model.vocab_size}")
    config.model.tokenizer = ComponentSpec(name="hf", params={"path": None})
    return tokenizer


# --- export ------------------------------------------------------------------------------------


def _rope_scaling(rope: Mapping[str, Any]) -> dict[str, Any]:
    """config.json's rope scaling fields of a rope component's params (none: default)."""
    if rope.get("scaling", "none") == "linear":
        return {"rope_type": "linear", "factor": float(rope["scaling_factor"])}
    if rope.get("scaling") == "llama3":
        return {"rope_type": "llama3", "factor": float(rope["scaling_factor"]),
                "low_freq_factor": float(rope["low_freq_factor"]),
                "high_freq_factor": float(rope["high_freq_factor"]),
                "original_max_position_embeddings": int(rope["original_context"])}
    return {}


def check_llama_exportable(config: Config, registry: Registry) -> None:
    """Raise ``ConfigError`` naming the first component the Llama layout cannot hold."""
    gemma = config.model.block.params.get("placement") == "sandwich"
    needed = {"arch": "gpt", "embedding": "token", "positional": "rope", "norm": "rmsnorm",
              "feedforward": "geglu" if gemma else "swiglu", "block": "gpt", "head": "lm"}
    layout = "Gemma's layout (sandwich norms)" if gemma else "the Llama layout"
    for key, wanted in needed.items():
        name = component_of(config, key, registry)[0]
        if name != wanted:
            raise ConfigError(f"model.{key}: '{name}' cannot be exported to {layout} "
                              f"(it needs '{wanted}')")
    if component_of(config, "attention", registry)[0] not in ("mha", "sdpa"):
        raise ConfigError("model.attention: only 'mha' and 'sdpa' export to the Llama layout")
    if gemma:  # Gemma's own parts, each a config.json field
        wanted = (("embedding", "scale", "sqrt_dim"), ("norm", "offset", 1.0))
        refuse_unexported_params(config, wanted, "Gemma")
        if config.model.local_positional is not None and not config.model.local_layers:
            raise ConfigError("model.local_positional: set without local_layers")
    else:  # placement and qk_norm pick the family (OLMo 2, Qwen3); the rest has no Llama field
        plain = tuple(p for p in PLAIN_PARAMS if p[1] not in ("placement", "qk_norm"))
        refuse_unexported_params(config, (*plain, ("attention", "qk_norm_offset", 0.0),
                                           ("attention", "scale", None),
                                           ("attention", "softcap", None)), "the Llama layout")
        for key in ("local_attention", "local_positional"):
            if getattr(config.model, key) is not None:
                raise ConfigError(f"model.{key}: local layers export only as Gemma")
    if config.model.vocab_size == "auto":
        raise ConfigError("model.vocab_size: 'auto' cannot be exported; it needs a number")


def _fits(family: Family, config: Config) -> bool:
    """Whether ``family``'s layout holds this model's attention and block."""
    attn = config.model.attention.params
    qkv_bias, out_bias = bool(attn.get("qkv_bias")), bool(attn.get("out_bias", True))
    placement = config.model.block.params.get("placement", "pre")
    if family.qkv_bias is None and qkv_bias != out_bias:  # one attention_bias for all four
        return False
    return ((family.qkv_bias is None or family.qkv_bias == qkv_bias)
            and (family.out_bias is None or family.out_bias == out_bias)
            and family.qk_norm == attn.get("qk_norm", "none") and family.placement == placement)


def _whole_if_close(value: float) -> int | float:
    """``256`` for 256.00000000000003 (1 / scale^2 of an integer scalar), else the float."""
    nearest = round(value)
    return nearest if abs(value - nearest) < 1e-6 * max(1.0, abs(value)) else value


def _gemma_fields(config: Config, family: Family) -> dict[str, Any]:
    """The config.json fields of a Gemma model: the inverse of ``_gemma``."""
    m = config.model
    attn = m.attention.params
    local = m.local_attention.params if m.local_attention is not None else attn
    scale = attn.get("scale")
    head_dim = m.head_dim or m.emb_dim // m.n_heads
    layers = set(m.local_layers)
    window = local.get("window")
    fields: dict[str, Any] = {
        "hidden_activation": "gelu_pytorch_tanh",
        "query_pre_attn_scalar": _whole_if_close(
            (scale if scale is not None else head_dim ** -0.5) ** -2),
        "attn_logit_softcapping": attn.get("softcap"),
        "final_logit_softcapping": m.head.params.get("softcap"),
        "sliding_window": window if window is not None else m.context_length,
        "layer_types": ["sliding_attention" if i in layers else "full_attention"
                        for i in range(m.n_layers)],
    }
    if family.gemma == 3:
        fields["use_bidirectional_attention"] = False
    return fields


def llama_config_from(config: Config, source: Mapping[str, Any] | None = None, *,
                      hidden: int) -> dict[str, Any]:
    """The ``config.json`` of a Llama-shaped llmbricks config, in the source's family when it fits.

    The source's own fields (bos/eos ids, its family) are kept; every field that decides the
    maths is written from the llmbricks config. Without a source that fits, the first family
    whose layout holds the model (Llama, Mistral, Qwen2, Qwen3, OLMo 2, Phi-3) is written.
    ``hidden`` is the feed-forward's width (read from the weights).
    """
    m = config.model
    attn, rope = m.attention.params, m.positional.params
    qkv_bias = bool(attn.get("qkv_bias"))
    base = dict(source or {})
    family = FAMILIES.get(str(base.get("model_type")))
    if family is None or not _fits(family, config):
        family = next((f for f in FAMILIES.values() if _fits(f, config)), None)
        if family is None:
            raise ConfigError("model.attention/model.block: no Llama-shaped family has this "
                              f"combination (qkv_bias {qkv_bias}, out_bias "
                              f"{attn.get('out_bias', True)}, qk_norm {attn.get('qk_norm', 'none')}, "
                              f"placement {m.block.params.get('placement', 'pre')})")
        base = {key: value for key, value in base.items() if key in ("bos_token_id", "eos_token_id")}
    if family.qk_norm != "none" and attn.get("qk_norm_eps") != m.norm.params.get("eps"):
        raise ConfigError(f"model.attention.qk_norm_eps: {family.model_type} uses rms_norm_eps for "
                          f"every norm, but it is {attn.get('qk_norm_eps')} here and model.norm.eps "
                          f"{m.norm.params.get('eps')}")
    fraction = float(rope.get("rotary_fraction", 1.0))
    if fraction != 1.0 and not family.partial_rotary:
        raise ConfigError(f"model.positional.rotary_fraction: {fraction} cannot be exported as "
                          f"{family.model_type}, which rotates whole heads (1.0)")
    window = attn.get("window")
    if window is not None and window < m.context_length and "sliding_window" not in family.defaults:
        raise ConfigError(f"model.attention.window: {window} cannot be exported as "
                          f"{family.model_type}, which has no sliding window (Mistral and Phi-3 do)")
    rope_params: dict[str, Any] = {"rope_theta": float(rope.get("theta", 10000.0)),
                                   "rope_type": "default"}
    if family.partial_rotary:
        rope_params["partial_rotary_factor"] = fraction
    rope_params.update(_rope_scaling(rope))
    if family.gemma == 3:  # one rope per layer type
        local_rope = m.local_positional.params if m.local_positional is not None else rope
        rope_params = {"full_attention": rope_params,
                       "sliding_attention": {"rope_theta": float(local_rope.get("theta", 10000.0)),
                                             "rope_type": "default", **_rope_scaling(local_rope)}}
    for key in ("rope_scaling", "rope_theta", "transformers_version", "torch_dtype"):
        base.pop(key, None)
    base.update({
        "architectures": [family.architecture],
        "model_type": family.model_type,
        "vocab_size": int(m.vocab_size),
        "hidden_size": m.emb_dim,
        "intermediate_size": hidden,
        "num_hidden_layers": m.n_layers,
        "num_attention_heads": m.n_heads,
        "num_key_value_heads": m.n_kv_heads,
        "head_dim": m.head_dim or m.emb_dim // m.n_heads,
        "hidden_act": "silu",
        "max_position_embeddings": m.context_length,
        "rms_norm_eps": float(m.norm.params.get("eps", 1e-6)),
        "rope_parameters": rope_params,
        "tie_word_embeddings": bool(m.head.params.get("tie_weights", True)),
        "attention_dropout": 0.0,
        "dtype": "float32",
    })
    if family.gemma:
        base.update(_gemma_fields(config, family))
        base.pop("hidden_act", None)
    if family.qkv_bias is None:  # one flag for q, k, v and the output
        base["attention_bias"] = qkv_bias
    if family.model_type == "llama":
        base["mlp_bias"] = False
    if "sliding_window" in family.defaults and family.model_type != "qwen2" and not family.gemma:
        base["sliding_window"] = window if window is not None and window < m.context_length else None
    return base


def export_llama(model_dir: str | Path, out: str | Path, *, overwrite: bool = False,
                 registry: Registry | None = None) -> dict[str, Any]:
    """Write a Llama-shaped llmbricks model directory as a Hugging Face folder; returns config.json."""
    registry = registry or get_registry()
    root = Path(model_dir)
    check_output_dir(out, overwrite=overwrite, kind=HF_KIND)
    config = load_config(root / CONFIG_FILE, registry=registry)
    check_llama_exportable(config, registry)
    source_file = root / HF_SOURCE_FILE
    source = read_json(source_file) if source_file.is_file() else None
    config, model, _ = load_model_dir(root, registry=registry, with_tokenizer=False)
    weights = model.state_dict()
    hidden = int(weights["blocks.0.ff.up.weight"].shape[0])
    hf_config = llama_config_from(config, source if isinstance(source, dict) else None, hidden=hidden)
    tied = bool(hf_config["tie_word_embeddings"])
    state = {n: t.detach() for n, t in weights.items()
             if not (tied and n == "head.proj.weight")}
    layout = hf_layout({n: tuple(t.shape) for n, t in state.items()},
                       FAMILIES[hf_config["model_type"]])
    tensors = {name: torch.cat([state[n] for n, _ in parts]).contiguous().clone()
               for name, parts in layout.items()}
    with atomic_directory(out, overwrite=overwrite, kind=HF_KIND) as tmp:
        save_file(tensors, str(tmp / HF_WEIGHTS_FILE), metadata={"format": "pt"})
        (tmp / HF_CONFIG_FILE).write_text(json.dumps(hf_config, indent=2) + "\n", encoding="utf-8")
        _copy_hf_tokenizer(root / TOKENIZER_DIR, tmp)
    return hf_config


def _copy_hf_tokenizer(saved: Path, out: Path) -> None:
    """Put an ``hf`` tokenizer's files back under their Hugging Face names.

    The ``hf`` component saves the source's files as ``hf_<name>`` beside its own state file
    (which is also called ``tokenizer.json``); other tokenizers have no such files.
    """
    if not saved.is_dir():
        return
    for path in sorted(saved.glob("hf_*")):
        if path.is_file():
            shutil.copyfile(path, out / path.name.removeprefix("hf_"))
