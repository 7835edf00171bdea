"""Config -> tokenizer and model. No training code here."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import Config, ModelConfig
from .errors import DataError
from .interfaces import Model, ModelParts, Tokenizer
from .registry import Registry, get_registry


def _model_config(config: Config | ModelConfig) -> ModelConfig:
    return config.model if isinstance(config, Config) else config


def build_tokenizer(config: Config | ModelConfig, registry: Registry | None = None) -> Tokenizer | None:
    """The tokenizer named by ``model.tokenizer`` (untrained if it learns from data), or ``None``."""
    model = _model_config(config)
    if model.tokenizer is None:
        return None
    return (registry or get_registry()).build("tokenizer", model.tokenizer)


def load_tokenizer(directory: str | Path, registry: Registry | None = None) -> Tokenizer:
    """Rebuild a saved tokenizer: ``tokenizer.json`` names the component that wrote it."""
    state_file = Path(directory) / "tokenizer.json"
    try:
        name = json.loads(state_file.read_text(encoding="utf-8"))["name"]
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{directory} holds no saved tokenizer ({state_file}: {exc})") from None
    cls = (registry or get_registry()).get("tokenizer", name)
    return cls.load(directory)


def build_model(config: Config | ModelConfig, registry: Registry | None = None, *,
                tokenizer: Tokenizer | None = None,
                device: torch.device | str | None = None) -> Model:
    """Assemble the model a config describes, then apply ``model.adapters`` in order.

    ``vocab_size: auto`` takes ``tokenizer.vocab_size`` when the config could not resolve it.
    Build under ``device="meta"`` to get shapes and counts without allocating memory.
    """
    registry = registry or get_registry()
    model = _model_config(config)
    vocab = tokenizer.vocab_size if (model.vocab_size == "auto" and tokenizer is not None) else None
    dims = model.dims(vocab_size=vocab)

    def part(kind: str, spec: Any, **context: Any) -> Any:
        return lambda: registry.build(kind, spec, dims=dims, **context)

    local = frozenset(model.local_layers)

    def attention(index: int) -> Any:
        spec = model.local_attention if index in local and model.local_attention else model.attention
        return part("attention", spec)

    parts = ModelParts(
        embedding=part("embedding", model.embedding),
        positional=part("positional", model.positional),
        block=lambda index: registry.build(
            "block", model.block, dims=dims, attention=attention(index),
            norm=part("norm", model.norm), feedforward=part("feedforward", model.feedforward)),
        norm=part("norm", model.norm),
        head=part("head", model.head),
        local_layers=local,
        local_positional=(part("positional", model.local_positional)
                          if model.local_positional is not None else None),
    )
    with torch.device(device) if device is not None else contextlib.nullcontext():
        built: Model = registry.build("model", model.arch, dims=dims, parts=parts)
        for spec in model.adapters:
            adapter = registry.build("adapter", spec)
            adapter.apply(built)
            built.adapters.append(adapter)
    return built


def adapter_state_names(model: nn.Module) -> set[str]:
    """State-dict names of every adapter tensor in ``model`` (empty without adapters)."""
    names: set[str] = set()
    for adapter in model.adapters if isinstance(model, Model) else []:
        names.update(adapter.state_dict(model))
    return names


@dataclass
class ModelSummary:
    """Parameter counts of a model: per top-level part, in total, and with the head tied/untied."""

    parts: dict[str, int]
    total: int
    tied: int
    untied: int
    head_tied: bool
    dims: dict[str, Any] = field(default_factory=dict)

    @property
    def fp32_bytes(self) -> int:
        return self.total * 4

    def to_data(self) -> dict[str, Any]:
        return {"parts": self.parts, "total": self.total, "total_tied": self.tied,
                "total_untied": self.untied, "head_tied": self.head_tied,
                "fp32_mib": round(self.fp32_bytes / 2**20, 2), "dims": self.dims}


def summarize(model: nn.Module) -> ModelSummary:
    """Count parameters; shared tensors count once. Works on meta-device models.

    For a ``Model``, ``tied``/``untied`` compare its head's output weight with the embedding
    table (the parts its ``layout()`` names); any other module counts as it is.
    """
    seen: set[int] = set()
    parts: dict[str, int] = {}
    for name, child in model.named_children():
        count = 0
        for p in child.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                count += p.numel()
        parts[name] = count
    own = sum(p.numel() for p in model.parameters(recurse=False) if id(p) not in seen)
    if own:
        parts["(own)"] = own
    total = sum(parts.values())
    layout = model.layout() if isinstance(model, Model) else None
    head_weight = layout.head.output_weight() if layout is not None else None
    emb_weight = layout.embedding.weight if layout is not None and layout.embedding is not None \
        else None
    head_tied = head_weight is not None and head_weight is emb_weight
    if head_tied:
        tied, untied = total, total + head_weight.numel()
    elif head_weight is not None and emb_weight is not None and head_weight.shape == emb_weight.shape:
        tied, untied = total - head_weight.numel(), total
    else:
        tied = untied = total
    dims = dict(vars(model.dims)) if isinstance(model, Model) else {}
    return ModelSummary(parts=parts, total=total, tied=tied, untied=untied, head_tied=head_tied,
                        dims=dims)


def summarize_config(config: Config | ModelConfig, registry: Registry | None = None) -> ModelSummary:
    """Summarize the model a config describes, built on the meta device (no memory, no time)."""
    return summarize(build_model(config, registry, device="meta"))
