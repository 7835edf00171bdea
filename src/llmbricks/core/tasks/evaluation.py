"""Held-out loss and perplexity of a trained (or imported) model: ``llmbricks eval``.

``loss = -(1/N) sum_t log p(x_{t+1} | x_<=t)`` over every predicted token of non-overlapping
context-length windows, and ``perplexity = exp(loss)``.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..config import load_config, resolve_config
from ..config_io import parse_yaml
from ..errors import ConfigError, DataError
from ..interfaces import Model
from ..registry import Registry, get_registry
from ..store.model_dir import CONFIG_FILE
from ..store.runs import load_run
from ..store.token_cache import prepare_data, ready_tokenizer
from ..train.batches import WindowBatches
from .classifier import evaluate_classifier


@torch.inference_mode()
def token_loss(model: Model, tokens: np.ndarray, *, batch_size: int = 8,
               max_batches: int | None = None) -> tuple[float, int, int]:
    """Mean next-token cross-entropy over windows of the model's context; ``(loss, tokens, batches)``."""
    device = next(model.parameters()).device
    length = min(model.dims.context_length, len(tokens) - 1)
    if length < 1:
        raise DataError(f"{len(tokens)} tokens are too few to evaluate: need at least 2")
    windows = WindowBatches(tokens, length, batch_size, shuffle=False, drop_last=False)
    total, count, batches = 0.0, 0, 0
    for inputs, targets in itertools.islice(windows.epoch(0), max_batches):
        inputs, targets = inputs.to(device), targets.to(device)
        logits = model(inputs).float()
        total += F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum").item()
        count += targets.numel()
        batches += 1
    return total / count, count, batches


def evaluate_run(path: str | Path, *, data: str | dict | None = None, batch_size: int = 8,
                 max_batches: int | None = None, device: torch.device | str = "cpu",
                 registry: Registry | None = None) -> dict[str, Any]:
    """Loss and perplexity of the run or model directory ``path``.

    ``data`` is a text data source (a name, a YAML spec string or a mapping); by default the run's
    own validation split (``data.val_fraction`` of its ``data.source``). A classifier (a head with
    ``per_token = False``) reports accuracy, P/R/F1 and the confusion matrix instead, on a labeled
    ``data`` source or its own test split (``core.tasks.classifier.evaluate_classifier``).
    """
    registry = registry or get_registry()
    if _is_classifier(path, registry):
        spec = parse_yaml(data, "--data") if isinstance(data, str) else data
        return evaluate_classifier(path, data=spec, batch_size=batch_size,
                                   max_batches=max_batches, device=device, registry=registry)
    config, model, tokenizer = load_run(path, device, registry)
    if tokenizer is None:
        tokenizer, _ = ready_tokenizer(config, registry)
    if data is not None:
        spec = parse_yaml(data, "--data") if isinstance(data, str) else data
        raw = config.to_data()
        raw["data"]["source"] = spec
        try:
            config = resolve_config(raw, registry)
        except ConfigError as exc:
            raise ConfigError(str(exc).replace("data.source", "--data", 1)) from None
        tokens = prepare_data(config, registry, tokenizer=tokenizer).cache.tokens
        label = config.data.source.name
    else:
        if config.data.val_fraction <= 0:
            raise ConfigError(f"{path} has no validation split (data.val_fraction is 0): "
                              "pass --data SOURCE")
        _, tokens = prepare_data(config, registry, tokenizer=tokenizer).split(config.data.val_fraction)
        label = f"{config.data.source.name} (validation split)"
    loss, count, batches = token_loss(model, tokens, batch_size=batch_size, max_batches=max_batches)
    return {"run": str(path), "data": label, "loss": loss, "perplexity": math.exp(min(loss, 50.0)),
            "tokens": count, "batches": batches}


def _is_classifier(path: str | Path, registry: Registry) -> bool:
    """Whether the directory's config names a head with one output per sequence."""
    config_file = Path(path) / CONFIG_FILE
    if not config_file.is_file():
        return False  # load_run reports it
    head = load_config(config_file, registry=registry).model.head
    return not registry.get("head", head.name).per_token
