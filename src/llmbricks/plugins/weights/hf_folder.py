"""A Hugging Face model folder read lazily: ``config.json`` and safetensors, one tensor at a time.

Why lazily: a checkpoint may be larger than the memory left beside the model being filled, so
the importers never hold the file's tensors and the model's at once. ``HFWeights`` reads only
the safetensors headers up front (names, shapes, dtypes), then each tensor when asked for it;
the files are memory-mapped, so a tensor that is not asked for is never read.

A folder holds ``model.safetensors``, or shards listed in ``model.safetensors.index.json``. Only
safetensors are read: a ``pytorch_model.bin`` would need unpickling, which llmbricks never does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor

from llmbricks.core.errors import CheckpointError
from llmbricks.core.store.atomic import OutputKind

__all__ = ["HF_CONFIG_FILE", "HF_INDEX_FILE", "HF_KIND", "HF_WEIGHTS_FILE", "HFWeights", "read_json",
           "weight_files"]

HF_CONFIG_FILE = "config.json"
HF_WEIGHTS_FILE = "model.safetensors"
HF_INDEX_FILE = "model.safetensors.index.json"
#: What ``export hf`` writes: only such a folder is replaced by ``--overwrite``.
HF_KIND = OutputKind("Hugging Face model folder", (HF_CONFIG_FILE, HF_WEIGHTS_FILE))

_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}


def read_json(path: Path) -> Any:
    """A JSON file, or one ``CheckpointError`` line saying why it cannot be read."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from None


def weight_files(root: Path) -> list[Path]:
    """The safetensors files of a folder: the single file, or every shard its index lists."""
    weights, index = root / HF_WEIGHTS_FILE, root / HF_INDEX_FILE
    if weights.is_file():
        return [weights]
    if index.is_file():
        data = read_json(index)
        weight_map = data.get("weight_map") if isinstance(data, dict) else None
        if not isinstance(weight_map, dict) or not weight_map:
            raise CheckpointError(f"{index}: no 'weight_map' object")
        files = [root / name for name in sorted(set(map(str, weight_map.values())))]
        for path in files:
            if not path.is_file():
                raise CheckpointError(f"{index} lists {path.name}, which is missing")
        return files
    if (root / "pytorch_model.bin").is_file():
        raise CheckpointError(f"{root} holds pytorch_model.bin but no {HF_WEIGHTS_FILE}; llmbricks "
                              "never unpickles: save it with safetensors "
                              "(save_pretrained(dir, safe_serialization=True))")
    raise CheckpointError(f"{root} holds no {HF_WEIGHTS_FILE} (nor {HF_INDEX_FILE})")


class HFWeights:
    """The tensors of a folder by name, with their shapes and dtypes, read one at a time."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._handles: dict[Path, Any] = {}
        self._where: dict[str, Path] = {}
        for path in weight_files(self.root):
            handle = self._open(path)
            for name in handle.keys():  # noqa: SIM118 - safe_open has keys(), not iteration
                self._where[name] = path

    def _open(self, path: Path) -> Any:
        if path not in self._handles:
            try:
                self._handles[path] = safe_open(str(path), framework="pt")
            except (SafetensorError, OSError, ValueError) as exc:
                raise CheckpointError(f"{path} is not a readable safetensors file: {exc}") from None
        return self._handles[path]

    def __contains__(self, name: object) -> bool:
        return name in self._where

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._where))

    def __len__(self) -> int:
        return len(self._where)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._open(self._where[name]).get_slice(name).get_shape())

    def is_float(self, name: str) -> bool:
        return self._open(self._where[name]).get_slice(name).get_dtype() in _DTYPES

    def get(self, name: str, dtype: torch.dtype | None = None) -> Tensor:
        """The tensor ``name``, read now (and cast to ``dtype`` when given)."""
        path = self._where[name]
        try:
            tensor = self._open(path).get_tensor(name)
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{path}: cannot read {name}: {exc}") from None
        return tensor if dtype is None else tensor.to(dtype)

    def file_of(self, name: str) -> Path:
        return self._where[name]

    def nbytes(self) -> int:
        """The size of the weight files on disk."""
        return sum(path.stat().st_size for path in {*self._where.values()})
