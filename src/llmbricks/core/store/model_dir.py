"""Model directories: a trained or imported model as three plain files, loadable without pickle.

```
DIR/config.yaml        the resolved config (every default written out; vocab_size a number)
DIR/model.safetensors  the weights (tied tensors stored once)
DIR/tokenizer/         the tokenizer's ``save()`` output, when there is a tokenizer
```

Loading resolves ``config.yaml`` against the registry first, so a directory that names a
component whose plugin is not installed fails there, with the usual config error. Writing is
atomic (``store.atomic.atomic_directory``): everything goes into a temporary directory beside the
target, which is renamed into place only once complete, so a reader never sees half a model
directory. ``overwrite`` replaces only a model directory, never another folder; a model directory
holding a symlink that leads outside it is refused when loaded.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from ..build import build_model, load_tokenizer
from ..config import Config, load_config
from ..errors import CheckpointError, LlmbricksError
from ..interfaces import Model, Tokenizer
from ..registry import Registry
from .atomic import OutputKind, atomic_directory, check_links

__all__ = [
    "CONFIG_FILE",
    "MODEL_KIND",
    "TOKENIZER_DIR",
    "WEIGHTS_FILE",
    "load_model_dir",
    "save_model_dir",
]

CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_DIR = "tokenizer"
#: What ``save_model_dir`` writes: only such a directory is replaced by ``--overwrite``.
MODEL_KIND = OutputKind("model directory", (CONFIG_FILE, WEIGHTS_FILE))


def save_model_dir(directory: str | Path, config: Config, model: Model,
                   tokenizer: Tokenizer | None = None, *, overwrite: bool = False,
                   extra_files: Sequence[Path] = ()) -> Path:
    """Write ``config.yaml``, ``model.safetensors`` and ``tokenizer/`` into ``directory``.

    The config is written with ``model.vocab_size`` set to the model's, so the directory builds
    without its tokenizer. ``extra_files`` are copied in beside them (a classifier's
    ``classifier.json``), inside the same atomic write. Returns the directory.
    """
    config = config.model_copy(deep=True)
    config.model.vocab_size = model.dims.vocab_size
    with atomic_directory(directory, overwrite=overwrite, kind=MODEL_KIND) as tmp:
        (tmp / CONFIG_FILE).write_text(config.to_yaml(), encoding="utf-8")
        # save_model drops the duplicate names of shared (tied) tensors and stores each once.
        save_model(model, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        if tokenizer is not None:
            tokenizer.save(tmp / TOKENIZER_DIR)
        for extra in extra_files:
            shutil.copyfile(extra, tmp / Path(extra).name)
    return Path(directory)


def load_model_dir(directory: str | Path, device: torch.device | str = "cpu",
                   registry: Registry | None = None, *, with_tokenizer: bool = True,
                   ) -> tuple[Config, Model, Tokenizer | None]:
    """Rebuild ``(config, model, tokenizer or None)`` from a model directory; never unpickles.

    The tokenizer is ``None`` when the directory holds none (or ``with_tokenizer`` is false).
    The model is returned in eval mode.
    """
    root = Path(directory)
    if not root.is_dir():
        raise CheckpointError(f"model directory {root} does not exist")
    config_file, weights = root / CONFIG_FILE, root / WEIGHTS_FILE
    for path in (config_file, weights):
        if not path.is_file():
            raise CheckpointError(f"{root} is not a llmbricks model directory: {path.name} is "
                                  f"missing (expected {CONFIG_FILE}, {WEIGHTS_FILE}, {TOKENIZER_DIR}/)")
    check_links(root)
    config = load_config(config_file, registry=registry)
    tokenizer = None
    if with_tokenizer and (root / TOKENIZER_DIR).is_dir():
        try:
            tokenizer = load_tokenizer(root / TOKENIZER_DIR, registry)
        except LlmbricksError as exc:
            raise CheckpointError(f"{root / TOKENIZER_DIR}: cannot load the tokenizer: {exc}") from None
    model = build_model(config, registry, tokenizer=tokenizer, device=device)
    try:
        missing, unexpected = load_model(model, str(weights), strict=False, device=str(device))
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{weights} is not readable safetensors matching {CONFIG_FILE}: "
                              f"{_one_line(exc)}") from None
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected {_few(unexpected)}")
        raise CheckpointError(f"{weights} does not match the model {CONFIG_FILE} describes: "
                              + "; ".join(parts))
    model.eval()
    return config, model, tokenizer


def _one_line(exc: BaseException, limit: int = 300) -> str:
    """torch's load errors span lines (a header, then one line per tensor): join and cut them."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    text = text or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _few(names: list[str], limit: int = 3) -> str:
    shown = ", ".join(sorted(names)[:limit])
    return shown + (f" (+{len(names) - limit} more)" if len(names) > limit else "")
