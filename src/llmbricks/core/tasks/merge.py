"""Fold a run's adapters into its base weights: a plain model directory, no adapter at inference."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from ..registry import Registry
from ..store.atomic import check_output_dir
from ..store.model_dir import MODEL_KIND, save_model_dir
from ..store.runs import load_run
from .classification import CLASSIFIER_FILE


def merge_adapters(source: str | Path, out: str | Path, *, registry: Registry | None = None,
                   overwrite: bool = False) -> tuple[Path, int]:
    """Load a run (or model directory) with adapters, merge them, write a model directory.

    Each adapter folds its update into the weights it wraps (LoRA: ``W <- W + (alpha/r) B A``),
    so the written model gives the same outputs with the plain layers. Its config lists no
    adapters; ``generate``, ``eval``, ``export`` and ``init_from`` read it like any model
    directory; a classifier's ``classifier.json`` is copied along. Returns the directory and how
    many adapters were merged.
    """
    check_output_dir(out, overwrite=overwrite, kind=MODEL_KIND)  # before the slow load
    config, model, tokenizer = load_run(source, "cpu", registry)
    if not model.adapters:
        raise ConfigError(f"{source} has no adapters to merge (its model.adapters is empty)")
    count = len(model.adapters)
    for adapter in reversed(model.adapters):  # the last applied wraps outermost: undo it first
        adapter.merge(model)
    model.adapters.clear()
    merged = config.model_copy(deep=True)
    merged.model.adapters = []
    model.requires_grad_(True)
    # What a classifier needs beyond its weights (labels, padding, split) travels with them.
    extras = [path for path in (Path(source) / CLASSIFIER_FILE,) if path.is_file()]
    return save_model_dir(out, merged, model, tokenizer, overwrite=overwrite,
                          extra_files=extras), count
