"""Run directories: the resolved config, a manifest, the tokenizer, checkpoints and metrics.

```
RUN/config.yaml                 resolved config (every default; vocab_size a number)
RUN/manifest.json               versions, seed, git sha, host, and each component's plugin
RUN/tokenizer/                  tokenizer state
RUN/checkpoints/step-N/         model.safetensors, optimizer.pt, state.json, and
                                adapter.safetensors when the model has adapters (LoRA)
RUN/metrics.jsonl               one JSON object per event (the jsonl logger)
RUN/loss.png                    curves, redrawn at each evaluation
RUN/samples.txt                 the sample generated at each evaluation
```

A checkpoint is written into a temporary directory and renamed into place, and its
``state.json`` records each file's size and sha256: a checkpoint is either complete and verified
or ignored, so a run killed at any moment resumes from its last good one. Nothing is unpickled:
weights are safetensors, optimizer and RNG state load with ``torch.load(weights_only=True)``; a
file that fails that safe load is refused as untrusted or corrupt, never loaded another way.

A run directory is usable or absent at every instant: its first files (config, manifest,
tokenizer) are written into a temporary directory beside it and renamed into place together, so
a kill during setup leaves nothing the same command cannot start again. A run directory is
refused when it holds a symlink leading outside it (``store.atomic.check_links``).
"""

from __future__ import annotations

import json
import pickle
import platform
import re
import shutil
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file
from torch import nn

from ..build import adapter_state_names, build_model, load_tokenizer
from ..config import COMPONENT_FIELDS, COMPONENT_LIST_FIELDS, Config, load_config
from ..errors import CheckpointError, LlmbricksError
from ..interfaces import Model, Tokenizer
from ..registry import Registry, get_registry
from .atomic import (
    OutputKind,
    atomic_directory,
    check_links,
    is_temp_name,
    kill_point,
    writing,
)
from .datafiles import sha256_file
from .model_dir import CONFIG_FILE, TOKENIZER_DIR, WEIGHTS_FILE, load_model_dir

MANIFEST_FILE = "manifest.json"
METRICS_FILE = "metrics.jsonl"
LOSS_PLOT = "loss.png"
SAMPLES_FILE = "samples.txt"
CHECKPOINTS_DIR = "checkpoints"
OPTIMIZER_FILE = "optimizer.pt"
ADAPTER_FILE = "adapter.safetensors"
STATE_FILE = "state.json"
_STEP_DIR = re.compile(r"^step-(\d+)$")
#: What ``train`` writes: only such a directory is replaced by ``train --overwrite``.
RUN_KIND = OutputKind("run directory", (CONFIG_FILE, MANIFEST_FILE))


@dataclass(frozen=True)
class Checkpoint:
    """A complete checkpoint directory and its ``state.json``."""

    step: int
    path: Path
    state: dict[str, Any]


class Run:
    """One training run on disk. Create it with ``Run.create``, reopen it with ``Run.open``."""

    def __init__(self, directory: Path, config: Config) -> None:
        self.directory = directory
        self.config = config

    # --- creating and opening -----------------------------------------------------------------

    @classmethod
    def create(cls, directory: str | Path, config: Config, tokenizer: Tokenizer | None,
               vocab_size: int, registry: Registry | None = None, *,
               overwrite: bool = False, decided: dict[str, Any] | None = None) -> Run:
        """Write config, manifest and tokenizer into a new (or empty) ``directory``, all at once.

        They are written into a temporary directory renamed into place, so ``directory`` never
        exists half made. ``overwrite`` replaces an existing run directory (never anything else).
        """
        root = Path(directory)
        config = config.model_copy(deep=True)
        config.model.vocab_size = vocab_size
        _remove_stale_setups(root)
        with atomic_directory(root, overwrite=overwrite, kind=RUN_KIND) as tmp:
            kill_point("setup:started")
            if tokenizer is not None:
                tokenizer.save(tmp / TOKENIZER_DIR)
                kill_point("setup:tokenizer")
            (tmp / MANIFEST_FILE).write_text(json.dumps({**manifest(config, registry),
                                                         **(decided or {})}, indent=2) + "\n",
                                             encoding="utf-8")
            kill_point("setup:manifest")
            (tmp / CONFIG_FILE).write_text(config.to_yaml(), encoding="utf-8")
            kill_point("setup:config")
        kill_point("setup:renamed")
        return cls(root, config)

    @classmethod
    def open(cls, directory: str | Path, registry: Registry | None = None) -> Run:
        """Reopen a run; refused when it holds a symlink that leads outside it."""
        root = Path(directory)
        if not (root / CONFIG_FILE).is_file():
            raise CheckpointError(f"{root} is not a run directory: {CONFIG_FILE} is missing")
        check_links(root)
        return cls(root, load_config(root / CONFIG_FILE, registry=registry))

    # --- paths --------------------------------------------------------------------------------

    @property
    def checkpoints_dir(self) -> Path:
        return self.directory / CHECKPOINTS_DIR

    @property
    def metrics_file(self) -> Path:
        return self.directory / METRICS_FILE

    @property
    def plot_file(self) -> Path:
        return self.directory / LOSS_PLOT

    @property
    def samples_file(self) -> Path:
        return self.directory / SAMPLES_FILE

    def tokenizer(self, registry: Registry | None = None) -> Tokenizer | None:
        path = self.directory / TOKENIZER_DIR
        return load_tokenizer(path, registry) if path.is_dir() else None

    # --- checkpoints --------------------------------------------------------------------------

    def save_checkpoint(self, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                        state: dict[str, Any], *, keep: int) -> Path:
        """Write ``checkpoints/step-N`` atomically, then drop all but the newest ``keep``.

        A disk that fills up (or any failed write) raises one ``CheckpointError`` naming the
        checkpoint and the cause; the previous checkpoints are untouched and nothing temporary
        is left.
        """
        target = self.checkpoints_dir / f"step-{step}"
        with writing(target):
            self.checkpoints_dir.mkdir(parents=True, exist_ok=True)
        # Built as checkpoints/.step-N.RANDOM.tmp (what resuming clears), then renamed in.
        with atomic_directory(target, overwrite=True) as tmp:
            written = save_weights(model, tmp)
            save_torch({"optimizer": optimizer.state_dict(), "rng": rng_state()}, tmp / OPTIMIZER_FILE)
            kill_point("checkpoint:files")
            files = {name: {"bytes": (tmp / name).stat().st_size, "sha256": sha256_file(tmp / name)}
                     for name in (*written, OPTIMIZER_FILE)}
            record = {**state, "step": step, "files": files, "saved_at": time.time()}
            (tmp / STATE_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
            kill_point("checkpoint:state")
        kill_point("checkpoint:renamed")
        self.prune(keep)
        kill_point("checkpoint:pruned")
        return target

    def prune(self, keep: int) -> None:
        """Drop all but the newest ``keep`` checkpoints."""
        for _step, old in self.checkpoint_dirs()[:-keep]:
            shutil.rmtree(old, ignore_errors=True)

    def checkpoint_dirs(self) -> list[tuple[int, Path]]:
        """``(step, path)`` of every ``step-N`` directory, oldest first (complete or not)."""
        if not self.checkpoints_dir.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.checkpoints_dir.iterdir()
                 if p.is_dir() and (m := _STEP_DIR.match(p.name))]
        return sorted(found)

    def latest_checkpoint(self, hashed: tuple[str, ...] | None = None, *,
                          problems: list[str] | None = None) -> Checkpoint | None:
        """The newest checkpoint that verifies; broken newer ones are skipped with a warning.

        ``hashed`` limits the sha256 check to those files (sizes are always checked). What was
        wrong with each skipped one is appended to ``problems`` when given.
        """
        for _step, path in reversed(self.checkpoint_dirs()):
            try:
                return verify_checkpoint(path, hashed)
            except CheckpointError as exc:
                if problems is not None:
                    problems.append(str(exc))
                warnings.warn(f"skipping {exc}", stacklevel=2)
        return None


def verify_checkpoint(path: str | Path, hashed: tuple[str, ...] | None = None) -> Checkpoint:
    """Read ``state.json`` and check every file's size and sha256; a clear error otherwise.

    ``hashed`` names the files whose sha256 is checked (default: all). Loading weights for
    generation needs only ``model.safetensors``, not the larger optimizer state.
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path} is not a directory")
    check_links(path)
    try:
        state = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
        files = state["files"]
        step = int(state["step"])
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} is incomplete: {STATE_FILE} is missing") from None
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt: {STATE_FILE} is unreadable ({exc})") from None
    if not isinstance(files, dict) or not all(
            isinstance(e, dict) and isinstance(e.get("bytes"), int) and isinstance(e.get("sha256"), str)
            for e in files.values()) or any(Path(n).name != n for n in files):
        raise CheckpointError(f"checkpoint {path} is corrupt: {STATE_FILE} lists its files wrongly")
    for name, expected in files.items():
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"checkpoint {path} is incomplete: {name} is missing")
        size = file.stat().st_size
        if size != expected["bytes"]:
            raise CheckpointError(f"checkpoint {path} is corrupt: {name} has {size} bytes, "
                                  f"expected {expected['bytes']} (truncated?)")
        if (hashed is None or name in hashed) and sha256_file(file) != expected["sha256"]:
            raise CheckpointError(f"checkpoint {path} is corrupt: {name} does not match its sha256")
    return Checkpoint(step=step, path=path, state=state)


def save_weights(model: nn.Module, directory: Path) -> list[str]:
    """Write ``model.safetensors`` (base weights) and ``adapter.safetensors`` (adapter tensors).

    ``directory`` is a checkpoint being built inside ``atomic_directory``, which settles the
    files' modes and fsyncs them before renaming it in.

    The base file has the plain model's names, so it loads into a model without adapters; the
    adapter file is small and can be shared on its own. A tensor shared by two names (a tied
    head) is stored once. Returns the file names written.
    """
    adapter = adapter_state_names(model)
    base: dict[str, torch.Tensor] = {}
    own: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, int, tuple[int, ...]]] = set()
    for name, tensor in model.state_dict().items():
        if name in adapter:
            own[name] = tensor.detach().contiguous()
            continue
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if key in seen:
            continue  # the same tensor under a second name (tied weights)
        seen.add(key)
        base[name] = tensor.detach().contiguous()
    save_file(base, str(directory / WEIGHTS_FILE), metadata={"format": "pt"})
    if not own:
        return [WEIGHTS_FILE]
    save_file(own, str(directory / ADAPTER_FILE), metadata={"format": "pt"})
    return [WEIGHTS_FILE, ADAPTER_FILE]


def load_weights(model: nn.Module, directory: Path) -> None:
    """Load what ``save_weights`` wrote; every tensor of the model must be accounted for."""
    weights = directory / WEIGHTS_FILE
    device = str(next(model.parameters()).device)
    adapter = adapter_state_names(model)
    try:
        missing, unexpected = load_model(model, str(weights), strict=False, device=device)
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{weights} does not fit this model: {exc}".splitlines()[0]) from None
    missing = [name for name in missing if name not in adapter]
    if missing or unexpected:
        raise CheckpointError(f"{weights} does not fit this model: missing {sorted(missing)[:3]}, "
                              f"unexpected {sorted(unexpected)[:3]}")
    if not adapter:
        return
    file = directory / ADAPTER_FILE
    try:
        state = load_file(str(file), device=device)
        missing, unexpected = model.load_state_dict(state, strict=False)
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{file} does not fit this model's adapters: "
                              f"{exc}".splitlines()[0]) from None
    absent = sorted(adapter - set(state))
    if absent or unexpected:
        raise CheckpointError(f"{file} does not fit this model's adapters: missing {absent[:3]}, "
                              f"unexpected {sorted(unexpected)[:3]}")


def load_checkpoint(checkpoint: Checkpoint, model: nn.Module,
                    optimizer: torch.optim.Optimizer | None = None, *,
                    restore_rng: bool = False) -> None:
    """Load weights (and optimizer and RNG state) from a verified checkpoint, without pickle.

    ``optimizer.pt`` is read with ``torch.load(weights_only=True)`` only: a file that needs more
    (objects beyond tensors and plain data) is refused as untrusted or corrupt, naming it.
    """
    load_weights(model, checkpoint.path)
    if optimizer is None and not restore_rng:
        return
    optimizer_state, rng = read_training_state(checkpoint)
    file, advice = checkpoint.path / OPTIMIZER_FILE, _earlier_advice(checkpoint)
    try:
        if optimizer is not None:
            optimizer.load_state_dict(optimizer_state)
        if restore_rng:
            set_rng_state(rng)
    except (ValueError, KeyError, TypeError, RuntimeError, IndexError) as exc:
        detail = " ".join(str(exc).split())[:150]
        raise CheckpointError(f"{file} does not fit this run's model and optimizer ({detail}); "
                              f"{advice}") from None


def read_training_state(checkpoint: Checkpoint, *, mmap: bool = False) -> tuple[Any, Any]:
    """``(optimizer state, RNG state)`` from ``optimizer.pt``, by the safe loader only.

    A file that needs more than tensors and plain data (a pickled object, a global) or is
    damaged is refused as untrusted or corrupt, naming it. ``mmap`` checks it without reading it
    all (what a resume does before it writes anything).
    """
    file = checkpoint.path / OPTIMIZER_FILE
    try:
        extra = torch.load(file, map_location="cpu", weights_only=True, mmap=mmap)
        return extra["optimizer"], extra["rng"]
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, KeyError, TypeError,
            AttributeError, ImportError, IndexError, OSError) as exc:
        raise CheckpointError(f"{file} is an untrusted or corrupt checkpoint file: it does not "
                              f"load as plain tensors and data{_unsafe_detail(exc)}, so it was "
                              f"not loaded; {_earlier_advice(checkpoint)}") from None


def _earlier_advice(checkpoint: Checkpoint) -> str:
    return f"delete {checkpoint.path} to resume from the checkpoint before it"


def save_torch(obj: Any, path: Path) -> None:
    """``torch.save`` into ``path``, reporting a failed write as the ``OSError`` it was.

    torch turns a full disk into ``enforce fail ... unexpected pos``; the file object here keeps
    the real error, so the caller can name the cause (``store.atomic.write_error``).
    """
    with open(path, "wb") as handle:
        recording = _RecordingFile(handle)
        try:
            torch.save(obj, recording)
        except RuntimeError:
            if recording.os_error is not None:
                raise recording.os_error from None
            raise


class _RecordingFile:
    """A write-only file object that remembers the ``OSError`` a write raised."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle
        self.os_error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self.handle.write(data)
        except OSError as exc:
            self.os_error = exc
            raise

    def flush(self) -> None:
        self.handle.flush()


def _unsafe_detail(exc: BaseException) -> str:
    """What the safe loader objected to (an unsupported global), without torch's advice."""
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
    return f" (it asks for {found.group(1)})" if found else ""


def _remove_stale_setups(root: Path) -> None:
    """Remove what a setup of ``root`` killed before its rename left beside it."""
    parent = root.parent
    if not parent.is_dir():
        return
    for path in parent.iterdir():
        if (path.name.startswith(f".{root.name}.") and is_temp_name(path.name) and path.is_dir()
                and not path.is_symlink()):
            shutil.rmtree(path, ignore_errors=True)


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --- loading a model from a run or a model directory -----------------------------------------


def is_run_dir(path: str | Path) -> bool:
    return (Path(path) / CONFIG_FILE).is_file() and not (Path(path) / WEIGHTS_FILE).is_file()


def load_run(path: str | Path, device: torch.device | str = "cpu",
             registry: Registry | None = None, *, checkpoint: str | Path | None = None,
             ) -> tuple[Config, Model, Tokenizer | None]:
    """``(config, model, tokenizer)`` from a run (its newest good checkpoint) or a model directory.

    A model directory is what ``llmbricks import gpt2`` or ``save_model_dir`` writes. The model is
    returned in eval mode.
    """
    root = Path(path)
    if not root.is_dir():
        raise CheckpointError(f"{root} is not a directory: give a run directory or a model directory")
    if (root / WEIGHTS_FILE).is_file():
        return load_model_dir(root, device, registry)
    run = Run.open(root, registry)
    if checkpoint is not None:
        found = verify_checkpoint(checkpoint, (WEIGHTS_FILE, ADAPTER_FILE))
    else:
        problems: list[str] = []
        with warnings.catch_warnings(record=True) as skipped:
            warnings.simplefilter("always")
            found = run.latest_checkpoint((WEIGHTS_FILE, ADAPTER_FILE), problems=problems)
        if found is None:
            why = f": {problems[0]}" if problems else ""
            raise CheckpointError(f"run {root} has no complete checkpoint yet (nothing verifies in "
                                  f"{run.checkpoints_dir}){why}")
        for warning in skipped:  # the newer, damaged checkpoints skipped on the way
            warnings.warn(str(warning.message), stacklevel=2)
    try:
        tokenizer = run.tokenizer(registry)
    except LlmbricksError as exc:
        raise CheckpointError(f"{root / TOKENIZER_DIR}: cannot load the tokenizer: {exc}") from None
    model = build_model(run.config, registry, tokenizer=tokenizer, device=device)
    load_checkpoint(found, model)
    model.eval()
    return run.config, model, tokenizer


# --- small helpers ---------------------------------------------------------------------------


def manifest(config: Config, registry: Registry | None = None) -> dict[str, Any]:
    """What made this run: versions, seed, git sha, host, and where each component comes from."""
    from importlib.metadata import PackageNotFoundError, version

    registry = registry or get_registry()
    try:
        ours = version("llmbricks")
    except PackageNotFoundError:
        ours = None
    components = []
    specs = [(kind, getattr(getattr(config, s), f)) for (s, f), kind in COMPONENT_FIELDS.items()]
    specs += [(kind, spec) for (s, f), kind in COMPONENT_LIST_FIELDS.items()
              for spec in getattr(getattr(config, s), f)]
    for kind, spec in specs:
        if spec is None:
            continue
        info = registry.info(kind, spec.name)
        components.append({"kind": kind, "name": info.name, "plugin": info.plugin,
                           "distribution": info.distribution, "version": info.version})
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seed": config.seed,
        "seeds": config.seed_record(),  # the sources of variance the seed controls
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "llmbricks": ours},
        "git_sha": _git_sha(),
        "host": platform.node(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "components": components,
    }


def _git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
