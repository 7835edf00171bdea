"""llmbricks: build, train, finetune and compare GPT-style language models from swappable parts.

The public API is re-exported here lazily, so ``import llmbricks`` (and ``llmbricks --help``)
does not import torch.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from llmbricks.core.hookspecs import hookimpl

try:
    __version__ = version("llmbricks")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0+unknown"

_LAZY: dict[str, str] = {
    "load_config": "llmbricks.core.config",
    "Config": "llmbricks.core.config",
    "build_model": "llmbricks.core.build",
    "build_tokenizer": "llmbricks.core.build",
    "summarize": "llmbricks.core.build",
    "summarize_config": "llmbricks.core.build",
    "load_tokenizer": "llmbricks.core.build",
    "generate": "llmbricks.core.tasks.generation",
    "generate_ids": "llmbricks.core.tasks.generation",
    "prepare_data": "llmbricks.core.store.token_cache",
    "make_loader": "llmbricks.core.train.windows",
    "SlidingWindowDataset": "llmbricks.core.train.windows",
    "load_model_dir": "llmbricks.core.store.model_dir",
    "train": "llmbricks.core.train.session",
    "load_run": "llmbricks.core.store.runs",
    "Run": "llmbricks.core.store.runs",
    "evaluate_run": "llmbricks.core.tasks.evaluation",
    "TrainingInterrupted": "llmbricks.core.train.loop",
    "save_model_dir": "llmbricks.core.store.model_dir",
    "get_registry": "llmbricks.core.registry",
    "Registry": "llmbricks.core.registry",
    "Component": "llmbricks.core.component",
    "ParamsModel": "llmbricks.core.component",
    "Dims": "llmbricks.core.component",
    "KVCache": "llmbricks.core.kv_cache",
    "SlotKVCache": "llmbricks.core.slot_cache",
    "Engine": "llmbricks.core.tasks.engine",
    "Sampling": "llmbricks.core.tasks.requests",
    "TextStream": "llmbricks.core.tasks.text_stream",
    "Conversation": "llmbricks.core.tasks.chat",
    "classify": "llmbricks.core.tasks.classifier",
    "load_classifier": "llmbricks.core.tasks.classifier",
    "evaluate_classifier": "llmbricks.core.tasks.classifier",
    "instruction_prompt": "llmbricks.core.tasks.instruction",
    "merge_adapters": "llmbricks.core.tasks.merge",
    **{name: "llmbricks.core.tasks.inspection" for name in (
        "attention_weights", "inspect_attention", "inspect_positional", "inspect_embeddings")},
    "make_plan": "llmbricks.core.ablation",
    "run_ablation": "llmbricks.core.ablation",
    "build_report": "llmbricks.core.ablation.report",
    **{name: "llmbricks.core.interfaces" for name in (
        "Tokenizer", "Embedding", "PositionalEncoding", "PositionContext", "Attention", "Norm", "FeedForward",
        "Block", "Model", "ModelParts", "Head", "Adapter", "Trainer", "DataSource", "Logger",
        "PromptTemplate", "Optimizer", "Schedule")},
    **{name: "llmbricks.core.errors" for name in (
        "LlmbricksError", "ConfigError", "ComponentError", "PluginError", "DataError",
        "CheckpointError")},
}

__all__ = ["__version__", "hookimpl", "registry", *_LAZY]


def __getattr__(name: str) -> Any:
    if name == "registry":
        return import_module("llmbricks.core.registry").get_registry()
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'llmbricks' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
