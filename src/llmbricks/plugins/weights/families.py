"""One entry point for every family: ``import_hf`` picks the importer by ``config.json``'s
``model_type``, ``export_any`` picks the layout a model's components fit.

The families themselves are data in their own modules: GPT-2 in ``gpt2_hf`` (Conv1D layouts,
packed q/k/v), the Llama shape (Llama, Mistral, Qwen2/3, OLMo 2, Gemma 2/3, Phi-3) in ``llama_hf``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmbricks.core.config import Config, load_config
from llmbricks.core.errors import CheckpointError, ConfigError
from llmbricks.core.registry import Registry, get_registry
from llmbricks.core.store.atomic import check_output_dir
from llmbricks.core.store.model_dir import CONFIG_FILE, MODEL_KIND

from . import gpt2_hf, llama_hf
from .hf_folder import HF_CONFIG_FILE, read_json
from .hub import resolve_source

__all__ = ["ExportSummary", "ImportSummary", "export_any", "import_hf", "supported_model_types"]


@dataclass
class ImportSummary:
    """What an import wrote, whichever family it was."""

    source: Path
    out: Path
    family: str
    config: Config
    parameters: int
    notes: list[str] = field(default_factory=list)


@dataclass
class ExportSummary:
    """What an export wrote: the family (model_type) and its config.json."""

    out: Path
    family: str
    architecture: str
    hf_config: dict[str, Any]
    notes: list[str] = field(default_factory=list)


#: How each model_type is written for people.
DISPLAY_NAMES = {"gpt2": "GPT-2", "llama": "Llama", "mistral": "Mistral", "qwen2": "Qwen2",
                 "qwen3": "Qwen3", "olmo2": "OLMo 2", "gemma2": "Gemma 2", "gemma3_text": "Gemma 3",
                 "phi3": "Phi-3"}


def supported_model_types() -> list[str]:
    return ["gpt2", *llama_hf.FAMILIES]


def import_hf(source: str | Path, out: str | Path, *, revision: str | None = None,
              overwrite: bool = False, attention: str = "sdpa",
              registry: Registry | None = None) -> ImportSummary:
    """Import a Hugging Face folder or Hub repo id of any supported family into ``out``."""
    registry = registry or get_registry()
    check_output_dir(out, overwrite=overwrite, kind=MODEL_KIND)  # before any download
    folder = resolve_source(source, revision)
    config_path = folder / HF_CONFIG_FILE
    if not config_path.is_file():
        raise CheckpointError(f"{folder} holds no {HF_CONFIG_FILE} (a Hugging Face model folder "
                              "has config.json and model.safetensors)")
    hf = read_json(config_path)
    if not isinstance(hf, dict):
        raise CheckpointError(f"{config_path}: expected a JSON object")
    model_type = hf.get("model_type", "gpt2" if "n_embd" in hf else None)
    if model_type == "gpt2":
        done = gpt2_hf.import_gpt2(folder, out, overwrite=overwrite, attention=attention,
                                   registry=registry)
        return ImportSummary(folder, done.out, "gpt2", done.config, done.parameters, done.notes)
    if model_type in llama_hf.FAMILIES:
        result = llama_hf.import_llama(folder, out, overwrite=overwrite, attention=attention,
                                       registry=registry)
        return ImportSummary(folder, result.out, result.family, result.config, result.parameters,
                             result.notes)
    raise ConfigError(f"{config_path}: model_type {json.dumps(model_type)} is not supported (llmbricks "
                      f"imports: {', '.join(supported_model_types())})")


def export_any(model_dir: str | Path, out: str | Path, *, overwrite: bool = False,
               registry: Registry | None = None) -> ExportSummary:
    """Write a model directory as the Hugging Face family its components fit.

    GPT-2's layout takes absolute positions, layernorm and gelu; the Llama layout takes rope,
    rmsnorm and swiglu (written back as the family it was imported from, else Llama or Qwen2 by
    its biases). Anything else is one line naming the component in the way of each.
    """
    registry = registry or get_registry()
    root = Path(model_dir)
    if not (root / CONFIG_FILE).is_file():
        if not root.is_dir():
            raise CheckpointError(f"model directory {root} does not exist")
        raise CheckpointError(f"{root} is not a llmbricks model directory: {CONFIG_FILE} is missing")
    config = load_config(root / CONFIG_FILE, registry=registry)
    try:
        gpt2_hf.check_exportable(config, registry)
    except ConfigError as gpt2_problem:
        try:
            llama_hf.check_llama_exportable(config, registry)
        except ConfigError as llama_problem:
            raise ConfigError(f"{root} fits no Hugging Face family llmbricks exports: GPT-2: "
                              f"{gpt2_problem}; Llama: {llama_problem}") from None
        hf_config = llama_hf.export_llama(root, out, overwrite=overwrite, registry=registry)
        return ExportSummary(Path(out), hf_config["model_type"], hf_config["architectures"][0],
                             hf_config)
    done = gpt2_hf.export_hf(root, out, overwrite=overwrite, registry=registry)
    return ExportSummary(done.out, "gpt2", "GPT2LMHeadModel", done.hf_config, done.notes)
