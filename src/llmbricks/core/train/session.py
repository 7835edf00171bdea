"""``train(config)``: set up (or reopen) a run directory and hand it to the configured trainer.

This is what ``llmbricks train`` calls, on every rank under ``torchrun``. It picks the device,
readies the tokenizer, creates the run directory (rank 0) or finds the checkpoint to resume from,
builds the loggers, and calls ``trainer.fit(session)``. Trainers compose ``core.train.loop``
through ``Session.fit``.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..build import adapter_state_names, build_model
from ..config import Config, load_config
from ..errors import CheckpointError, ConfigError, DataError
from ..interfaces import Logger, Model, Tokenizer
from ..registry import Registry, get_registry
from ..store.atomic import (
    check_output_dir,
    is_temp_name,
    remove_leftovers,
    write_atomic,
    write_error,
)
from ..store.model_dir import CONFIG_FILE
from ..store.runs import RUN_KIND, Checkpoint, Run, load_run, read_training_state
from ..store.token_cache import ready_tokenizer
from .distributed import Distributed, from_environment, pick_device, pick_precision, shutdown
from .loop import TrainTask, run_loop, training_budget
from .memory import check_memory
from .plots import read_events
from .trainable import Policy, apply_trainable

RUNS_ROOT = Path("runs")
#: Fields a resumed run may change: its budget and how it reports. Anything else would make the
#: continuation a different experiment from the one its checkpoints belong to.
RESUMABLE_CHANGES = {"max_steps", "epochs", "max_tokens", "eval_every", "eval_batches",
                     "checkpoint_every", "keep_checkpoints", "log_every", "loggers",
                     "sample_prompt", "sample_tokens", "device", "compile",
                     # the fixes a non-finite stop suggests, applied from the last good checkpoint
                     "lr", "min_lr", "grad_clip", "precision", "on_nonfinite"}


@dataclass
class Session:
    """Everything a trainer's ``fit`` needs: the run, its config and where it runs.

    It also holds the wiring every trainer shares, so a trainer's ``fit`` is only what makes it
    different (its data, loss and evaluation): ``build_model`` (seeded, ``init_from``'s weights,
    the freeze policy) and ``fit`` (the loop, and the summary a trainer returns).
    """

    run: Run
    config: Config
    tokenizer: Tokenizer | None
    dist: Distributed
    device: torch.device
    registry: Registry
    resume: Checkpoint | None = None
    loggers: list[Logger] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    #: ``--resume`` of a run whose final checkpoint is written: nothing is left to do.
    finished: bool = False
    #: Stop at this step with an evaluation and a checkpoint (``train(pause_at=)``).
    pause_at: int | None = None
    #: The loop's status once ``fit`` returns: ``completed`` or ``paused``.
    status: str = "completed"

    def build_model(self, trainable_default: Policy, *,
                    tokenizer: Tokenizer | None = None) -> tuple[Model, Policy]:
        """The config's model on this session's device, ready to train; and the policy used.

        Seeded by ``seed`` (``seed_sources.init`` when set; ``seed_sources.dropout`` reseeds
        after the build); a run that starts (not one that resumes) loads ``train.init_from``'s
        weights; then ``train.trainable`` applies, ``auto`` meaning ``trainable_default``.
        """
        config = self.config
        torch.manual_seed(config.init_seed)
        model = build_model(config, self.registry, tokenizer=tokenizer or self.tokenizer,
                            device=self.device)
        if self.resume is None:
            initial_weights(model, config, self.registry)
        if config.dropout_seed is not None:  # dropout apart from the initialisation
            torch.manual_seed(config.dropout_seed)
        return model, apply_trainable(model, config.train.trainable, trainable_default)

    def fit(self, task: TrainTask) -> dict[str, Any]:
        """Train ``task`` in this run; the summary a trainer returns, with its final results."""
        result = run_loop(task, self.run, self.config, loggers=self.loggers, dist=self.dist,
                          device=self.device, resume=self.resume, history=self.history,
                          registry=self.registry, pause_at=self.pause_at)
        self.status = result.status
        state = result.state
        return {"step": state.step, "tokens": state.tokens, "train_loss": state.train_loss,
                "val_loss": state.val_loss, "best_val_loss": state.best_val_loss,
                "elapsed_s": state.elapsed_s, **result.results}


@dataclass
class TrainResult:
    run_dir: Path
    status: str
    step: int
    metrics: dict[str, Any]
    #: False on the other ranks of a torchrun job: rank 0 alone reports, as it alone logs.
    main_process: bool = True


def default_run_dir(config: Config, *, resume: bool = False, root: Path = RUNS_ROOT) -> Path:
    """``runs/NAME``, or ``runs/NAME-2``, ``-3``... when taken; with ``resume``, the newest of them."""
    base = check_run_name(config.name or "run")

    def numbered(path: Path) -> bool:  # runs/NAME or runs/NAME-<digits>
        suffix = path.name[len(base):]
        return path.name.startswith(base) and path.is_dir() and (
            suffix == "" or suffix[:1] == "-" and suffix[1:].isdigit())

    if resume:
        found = [p for p in root.iterdir() if numbered(p)] if root.is_dir() else []
        if not found:
            raise CheckpointError(f"no run to resume under {root / base}: give its directory "
                                  "with --out")
        return max(found, key=lambda p: p.stat().st_mtime)
    candidate, index = root / base, 1
    while candidate.exists() and (not candidate.is_dir() or any(candidate.iterdir())):
        index += 1
        candidate = root / f"{base}-{index}"
    return candidate


def check_run_name(name: str) -> str:
    """A run's ``name`` is one folder name under ``runs/``: it cannot place the run elsewhere."""
    bad = (not name.strip() or name in (".", "..") or "/" in name or "\\" in name or "\0" in name
           or Path(name).is_absolute() or is_temp_name(name) or len(name.encode()) > 200)
    if bad:
        raise ConfigError(f"name: {name!r} cannot name a run directory: it must be one folder name "
                          "under runs/ (no '/', '..' or absolute path); rename it, or give the "
                          "run directory with --out")
    return name


def training_config(source: str | Path, overrides: Iterable[str] = (),
                    registry: Registry | None = None) -> Config:
    """The config ``llmbricks train SOURCE`` trains: a config file, or a model/run directory.

    A directory (``import gpt2`` writes one) gives its own config, starting from its weights
    (``train.init_from``). The run's name defaults to the file's stem or the directory's name.
    """
    path = Path(source)
    if path.is_dir():
        if not (path / CONFIG_FILE).is_file():
            raise ConfigError(f"{path} is a directory without {CONFIG_FILE}: give a config file, "
                              "a model directory or a run directory")
        config = load_config(path / CONFIG_FILE, overrides, registry)
        config.train.init_from = str(path)
    else:
        config = load_config(path, overrides, registry)
    if config.name is None:
        config.name = path.resolve().name if path.is_dir() else path.stem
    return config


def train(config: Config, *, out: str | Path | None = None, resume: bool = False,
          overwrite: bool = False, registry: Registry | None = None,
          pause_at: int | None = None) -> TrainResult:
    """Train ``config`` into the run directory ``out`` (default ``runs/NAME``).

    ``pause_at`` stops at that step with an evaluation and a checkpoint (``status`` ``"paused"``;
    the learning-rate schedule still counts the whole budget); ``resume`` continues from there.

    ``resume`` continues ``out`` from its newest complete checkpoint, with the run's own config;
    only the fields in ``RESUMABLE_CHANGES`` may differ in ``config`` (e.g. a longer budget). A
    finished run is not trained again (``status`` ``"finished"``). ``overwrite`` starts a new
    run in ``out`` even when a run is there (never over a directory that is not a run).
    """
    registry = registry or get_registry()
    _check_init_from(config)
    dist = from_environment()
    try:
        device = pick_device(config.train.device, dist)
        check_memory(config, device, registry)  # refuse what cannot fit, before allocating
        directory = Path(out) if out is not None else default_run_dir(config, resume=resume)
        session = _resume(directory, config, dist, device, registry) if resume else \
            _create(directory, config, dist, device, registry, overwrite=overwrite)
        if session.finished and session.resume is not None:
            state = session.resume.state
            return TrainResult(run_dir=directory, status="finished", step=session.resume.step,
                               metrics={k: state.get(k) for k in ("step", "tokens", "train_loss",
                                                                  "val_loss", "best_val_loss")},
                               main_process=dist.is_main)
        try:
            session.loggers = [registry.build("logger", s) for s in session.config.train.loggers] \
                if dist.is_main else []
            trainer = registry.build("trainer", session.config.train.trainer)
            session.pause_at = pause_at
            metrics = trainer.fit(session)
        except BaseException as exc:
            if not resume and dist.is_main and _never_trained(session.run):
                # A failure while setting up: leave no half-made run blocking the same --out.
                shutil.rmtree(directory, ignore_errors=True)
            if isinstance(exc, OSError) and exc.errno in _DISK_ERRORS:
                raise write_error(exc.filename or directory, exc) from None
            raise
        return TrainResult(run_dir=directory, status=session.status,
                           step=int(metrics.get("step", 0)), metrics=dict(metrics),
                           main_process=dist.is_main)
    finally:
        shutdown(dist)


#: Failures of the disk, not of the program: reported as one line naming the file and the cause.
_DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}


def _never_trained(run: Run) -> bool:
    """No checkpoint and no step logged: the run holds nothing worth keeping."""
    if run.checkpoint_dirs():
        return False
    metrics = run.metrics_file
    return not (metrics.is_file() and '"event": "step"' in metrics.read_text(encoding="utf-8"))


def _check_init_from(config: Config) -> None:
    """Fail before anything is written when ``train.init_from`` names no run or model directory."""
    source = config.train.init_from
    if source and not (Path(source) / CONFIG_FILE).is_file():
        raise ConfigError(f"train.init_from: {source} is not a run or model directory "
                          f"({CONFIG_FILE} is missing)")


def _create(directory: Path, config: Config, dist: Distributed, device: torch.device,
            registry: Registry, *, overwrite: bool = False) -> Session:
    if (directory.is_dir() and not overwrite and RUN_KIND.matches(directory)
            and any(directory.iterdir())):
        raise CheckpointError(f"run directory {directory} already exists and is not empty: "
                              "pass --resume to continue it, --overwrite to start it over, or "
                              "choose another --out")
    check_output_dir(directory, overwrite=overwrite, kind=RUN_KIND)  # a file, a user's folder...
    tokenizer = None
    if config.model.tokenizer is not None:
        with dist.main_first():  # a tokenizer that learns from data is trained once and cached
            tokenizer, _ = ready_tokenizer(config, registry)
    vocab = config.model.vocab_size if config.model.vocab_size != "auto" else (
        tokenizer.vocab_size if tokenizer is not None else None)
    if vocab is None:
        raise ConfigError("model.vocab_size is 'auto' but no model.tokenizer is set; set one")
    if dist.is_main:
        decided = {"device": str(device), "precision": pick_precision(config.train.precision, device)}
        run = Run.create(directory, config, tokenizer, vocab, registry, overwrite=overwrite,
                         decided=decided)
    dist.barrier()
    if not dist.is_main:
        run = Run.open(directory, registry)
    return Session(run=run, config=run.config, tokenizer=tokenizer, dist=dist, device=device,
                   registry=registry)


def _resume(directory: Path, config: Config, dist: Distributed, device: torch.device,
            registry: Registry) -> Session:
    if not (directory / CONFIG_FILE).is_file():
        what = "it does not exist" if not directory.exists() else f"{CONFIG_FILE} is missing"
        raise CheckpointError(f"{directory} is not a run directory ({what}): there is nothing to "
                              "resume; start the run without --resume")
    run = Run.open(directory, registry)
    stored, given = run.config.to_data(), config.to_data()
    changed = _differences(stored, given)
    # The ablation section plans other runs; it never changes how this one trains.
    blocked = [path for path in changed if path != "name" and not path.startswith("train.loggers")
               and path.split(".")[0] != "ablation"
               and not (path.startswith("train.") and path.split(".")[1] in RESUMABLE_CHANGES)]
    if blocked:
        raise ConfigError(f"cannot resume {directory} with a different config: {', '.join(blocked[:4])} "
                          "changed; resume with the run's own config, or start a new run with --out")
    if dist.is_main:  # a process killed while writing leaves its temporary files and folders
        remove_leftovers(run.checkpoints_dir)
        remove_leftovers(run.directory)
    checkpoint = _checkpoint_to_resume(run)
    finished = _is_finished(checkpoint, config, changed)
    if checkpoint is not None and not finished:
        read_training_state(checkpoint, mmap=True)  # refused before anything is rewritten
    if changed:  # budget and reporting: the caller's values win, and the run records them
        run.config.train = config.train.model_copy(deep=True)
        if dist.is_main:
            write_atomic(run.directory / CONFIG_FILE, run.config.to_yaml())
    history = _trim_run_record(run, checkpoint, finished) if dist.is_main else []
    if finished and dist.is_main:
        run.prune(run.config.train.keep_checkpoints)  # a kill may have come before the pruning
    dist.barrier()
    return Session(run=run, config=run.config, tokenizer=run.tokenizer(registry), dist=dist,
                   device=device, registry=registry, resume=checkpoint, history=history,
                   finished=finished)


def _is_finished(checkpoint: Checkpoint | None, config: Config, changed: list[str]) -> bool:
    """Whether ``checkpoint`` ended the run under ``config``'s budget (then nothing is left to do).

    The final checkpoint records the budget it ended (``max_steps``, ``epochs``, ``max_tokens``):
    a run resumed once with a larger budget, stopped, and resumed again still has the steps the
    stored config now asks for. Checkpoints from before that record compare the configs instead.
    """
    if checkpoint is None or not checkpoint.state.get("final"):
        return False
    ended = checkpoint.state.get("budget")
    if isinstance(ended, dict):
        return ended == training_budget(config.train)
    return not {"train.max_steps", "train.epochs", "train.max_tokens"} & set(changed)


def _checkpoint_to_resume(run: Run) -> Checkpoint | None:
    """The newest checkpoint that verifies; ``None`` when the run has none at all.

    When checkpoints exist but none verifies, resuming refuses: starting again from step 0 would
    silently throw away the training they held (and prune them).
    """
    problems: list[str] = []
    with warnings.catch_warnings(record=True) as skipped:
        warnings.simplefilter("always")
        checkpoint = run.latest_checkpoint(problems=problems)
    if checkpoint is None and problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise CheckpointError(f"cannot resume {run.directory}: no checkpoint verifies: "
                              f"{problems[0]}{more}; restore or remove the damaged checkpoints, or "
                              "start the run over with --overwrite (deletes it)")
    for warning in skipped:  # the newer, damaged checkpoints skipped on the way
        warnings.warn(str(warning.message), stacklevel=3)
    if checkpoint is None:
        warnings.warn(f"{run.directory} has no checkpoint yet: starting it again from step 0",
                      stacklevel=3)
    return checkpoint


def initial_weights(model: torch.nn.Module, config: Config, registry: Registry) -> None:
    """Load ``train.init_from`` (a run or model directory) into a freshly built ``model``.

    Adapter tensors keep their fresh init (the source has none). When ``model.head`` differs
    from the source's head (an LM run finetuned into a classifier), the head keeps its fresh
    init too and the source's head weights are left out; everything else must match exactly.
    """
    source = config.train.init_from
    if not source:
        return
    source_config, start, _ = load_run(source, "cpu", registry)
    state = start.state_dict()
    new_head = source_config.model.head != config.model.head
    if new_head:
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
    fresh = adapter_state_names(model)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:300]
        raise ConfigError(f"train.init_from: the weights in {source} do not fit this model "
                          f"({detail}); use the same model section as that directory") from None
    missing = [k for k in missing if k not in fresh and not (new_head and k.startswith("head."))]
    if missing or unexpected:
        raise ConfigError(f"train.init_from: the weights in {source} do not fit this model "
                          f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}); "
                          "use the same model section as that directory")


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        out = []
        for key in sorted(set(a) | set(b)):
            if key == "vocab_size":
                continue  # the run's file holds the resolved number
            out += _differences(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


def _trim_run_record(run: Run, checkpoint: Checkpoint | None, finished: bool) -> list[dict[str, Any]]:
    """Cut what the user reads back to the checkpoint being resumed; return the curve's events.

    Everything after that checkpoint will be redone, so ``metrics.jsonl`` keeps its events up to
    the checkpoint's own ``checkpoint`` event (written again if a kill came before it) and
    ``samples.txt`` its samples up to that step: every event and sample appears once. A finished
    run keeps (or gets) its ``end`` event.
    """
    _trim_samples(run, checkpoint.step if checkpoint else 0)
    events = _read_metrics(run)
    if events is None:
        return []
    kept = _events_until(events, checkpoint, finished) if checkpoint else []
    write_atomic(run.metrics_file, "".join(json.dumps(e) + "\n" for e in kept))
    return [e for e in kept if e.get("event") in ("start", "step", "eval")]


def _read_metrics(run: Run) -> list[dict[str, Any]] | None:
    """The run's events; ``None`` when there is no file or it was damaged (then moved aside).

    A file damaged before its last line is moved aside (``metrics.jsonl.damaged``) with a warning:
    the run resumes, and its curve restarts from here.
    """
    if not run.metrics_file.is_file():
        return None
    try:
        return read_events(run.metrics_file)
    except DataError as exc:
        aside = run.metrics_file.with_name(run.metrics_file.name + ".damaged")
        os.replace(run.metrics_file, aside)
        warnings.warn(f"{exc}; moved it to {aside.name} and starting a new one", stacklevel=3)
        return None


def _events_until(events: list[dict[str, Any]], checkpoint: Checkpoint,
                  finished: bool) -> list[dict[str, Any]]:
    """The events up to ``checkpoint``'s ``checkpoint`` event (made when a kill lost it)."""
    step = checkpoint.step
    marks = [i for i, e in enumerate(events) if e.get("event") == "checkpoint" and e.get("step") == step]
    if marks:
        kept = events[:marks[-1] + 1]
        tail = events[marks[-1] + 1:]
    else:  # killed between the checkpoint's rename and its event: the events up to its step
        kept = [e for e in events if int(e.get("step") or 0) <= step]
        kept.append({"event": "checkpoint", "step": step, "time": checkpoint.state.get("saved_at"),
                     "path": str(checkpoint.path)})
        tail = []
    if finished:
        ends = [e for e in tail if e.get("event") == "end" and e.get("step") == step]
        state = checkpoint.state
        kept.append(ends[0] if ends else {
            "event": "end", "step": step, "time": state.get("saved_at"), "status": "completed",
            "elapsed_s": state.get("elapsed_s"), "tokens": state.get("tokens"),
            "train_loss": state.get("train_loss"), "val_loss": state.get("val_loss")})
    return kept


def _trim_samples(run: Run, step: int) -> None:
    """Drop ``samples.txt``'s samples past ``step`` (each starts with ``--- step N``)."""
    path = run.samples_file
    if not path.is_file():
        return
    text = path.read_text(encoding="utf-8", errors="replace")
    later = (m for m in re.finditer(r"^--- step (\d+)$", text, flags=re.MULTILINE)
             if int(m.group(1)) > step)
    cut = next(later, None)
    if cut is not None:
        write_atomic(path, text[:cut.start()])
