"""The one training loop every trainer composes.

A trainer hands over a ``TrainTask``: its model, its batches, its loss and its evaluation. The
loop owns everything else: AdamW, the learning-rate schedule, gradient accumulation and clipping,
the budget, evaluation and samples, precision, compilation, data parallelism, checkpoints,
resuming and Ctrl-C. One optimizer step is

    for each of grad_accum micro-batches:  (loss(model, batch) / grad_accum).backward()
    clip_grad_norm_(grad_clip);  lr = learning_rate(step);  AdamW step;  zero grads

Everything a resumed run needs to continue bit for bit is in its checkpoint: weights, optimizer
state, RNG state and the data position (epoch, micro-batch within it).
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..config import Config, TrainConfig
from ..errors import LlmbricksError
from ..interfaces import Logger
from ..store.runs import Checkpoint, Run, load_checkpoint, write_atomic
from .distributed import Distributed
from .optim import build_optimizer, learning_rate, set_learning_rate

#: Final results of a completed run (``TrainTask.finish``): test metrics, files written.
RESULTS_FILE = "results.json"


class TrainingInterrupted(LlmbricksError):
    """Ctrl-C: the step finished, a checkpoint was written, and the run can be resumed."""

    exit_code = 130  # the shell's code for SIGINT

    def __init__(self, run_dir: str, step: int) -> None:
        super().__init__(f"interrupted at step {step}; checkpoint written in {run_dir}")
        self.run_dir = run_dir
        self.step = step


@dataclass
class TrainTask:
    """What a trainer supplies. Batches are whatever ``loss`` and ``tokens_in`` understand."""

    model: nn.Module                                   # on its device, not yet wrapped
    train_batches: Callable[[int, int], Iterator[Any]]  # (epoch, start) -> this rank's batches
    batches_per_epoch: int                             # micro-batches per epoch on this rank
    tokens_per_batch: int                              # tokens in one micro-batch on one rank
    loss: Callable[[nn.Module, Any], Tensor]           # mean loss of one batch
    evaluate: Callable[[nn.Module], dict[str, float | None]]  # train_loss, val_loss, extras
    sample: Callable[[nn.Module], tuple[str, str]] | None = None  # -> (prompt, continuation)
    to_device: Callable[[Any, torch.device], Any] = lambda batch, device: batch
    #: After a completed run, on rank 0: final results (test metrics, written files). They are
    #: logged as a ``results`` event and written to ``RUN/results.json``.
    finish: Callable[[nn.Module], dict[str, Any]] | None = None


@dataclass
class LoopState:
    """Where training stands; saved in each checkpoint's ``state.json``."""

    step: int = 0            # optimizer steps done
    epoch: int = 0           # current pass over the training batches
    batch: int = 0           # micro-batches of this epoch already consumed (per rank)
    tokens: int = 0          # training tokens seen, all ranks
    elapsed_s: float = 0.0   # training time so far, evaluation included
    train_loss: float | None = None
    val_loss: float | None = None
    best_val_loss: float | None = None


@dataclass
class LoopResult:
    state: LoopState
    status: str
    total_steps: int
    history: list[dict[str, Any]] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)


def total_steps(train: TrainConfig, batches_per_epoch: int, tokens_per_step: int,
                grad_accum: int) -> int:
    """Optimizer steps in the budget: the first of max_steps, epochs and max_tokens reached."""
    budgets = []
    if train.max_steps is not None:
        budgets.append(train.max_steps)
    if train.epochs is not None:
        budgets.append(math.ceil(train.epochs * batches_per_epoch / grad_accum))
    if train.max_tokens is not None:
        budgets.append(math.ceil(train.max_tokens / tokens_per_step))
    return max(1, min(budgets))


class _Interrupt:
    """First Ctrl-C: finish the step, checkpoint, stop. Second: stop at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> _Interrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class Events:
    """Sends events to the loggers (rank 0 only) and keeps them for the loss plot."""

    def __init__(self, loggers: Sequence[Logger], active: bool,
                 history: list[dict[str, Any]] | None = None) -> None:
        self.loggers = list(loggers) if active else []
        self.active = active
        self.history = history or []

    def __call__(self, event: str, **fields: Any) -> None:
        if not self.active:
            return
        fields = {"time": time.time(), **fields}
        if event in ("start", "step", "eval"):
            self.history.append({"event": event, **fields})
        for logger in self.loggers:
            logger.log(event, **fields)

    def close(self) -> None:
        for logger in self.loggers:
            logger.close()


def run_loop(task: TrainTask, run: Run, config: Config, *, loggers: Sequence[Logger],
             dist: Distributed, device: torch.device, resume: Checkpoint | None = None,
             history: list[dict[str, Any]] | None = None) -> LoopResult:
    """Train ``task.model`` within ``config.train``'s budget; write checkpoints into ``run``."""
    train = config.train
    model = task.model
    optimizer = build_optimizer(model, lr=train.lr, weight_decay=train.weight_decay,
                                betas=train.betas, decay_embeddings=train.decay_embeddings,
                                device=device)
    state = LoopState()
    if resume is not None:
        load_checkpoint(resume, model, optimizer, restore_rng=True)
        known = set(LoopState.__dataclass_fields__)
        state = LoopState(**{k: v for k, v in resume.state.items() if k in known})
    steps = total_steps(train, task.batches_per_epoch, task.tokens_per_batch * train.grad_accum
                        * dist.world_size, train.grad_accum)
    trained = _wrap(model, train, dist, device)
    autocast = (torch.autocast(device_type=device.type, dtype=torch.bfloat16)
                if train.precision == "bf16" else contextlib.nullcontext())
    events = Events(loggers, dist.is_main, history)
    plotter = _Plotter(run)
    events("start", run_dir=str(run.directory), step=state.step, max_steps=steps,
           tokens_per_step=task.tokens_per_batch * train.grad_accum * dist.world_size,
           params=sum(p.numel() for p in model.parameters() if p.requires_grad),
           total_params=sum(p.numel() for p in model.parameters()),
           resumed=resume is not None, world_size=dist.world_size, config_name=config.name)
    if resume is not None:
        events("resume", step=state.step)

    def checkpoint() -> None:
        if dist.is_main:
            path = run.save_checkpoint(state.step, model, optimizer, asdict(state),
                                       keep=train.keep_checkpoints)
            events("checkpoint", step=state.step, path=str(path))
        dist.barrier()

    def evaluate() -> None:
        if dist.is_main:
            model.eval()
            with torch.no_grad(), autocast:
                metrics = dict(task.evaluate(model))
            state.train_loss, state.val_loss = metrics.pop("train_loss", None), metrics.pop("val_loss", None)
            if state.val_loss is not None and (state.best_val_loss is None
                                               or state.val_loss < state.best_val_loss):
                state.best_val_loss = state.val_loss
            per_token = getattr(getattr(model, "head", None), "per_token", True)
            val_ppl = math.exp(min(state.val_loss, 50.0)) \
                if state.val_loss is not None and per_token else None  # a classifier has none
            events("eval", step=state.step, train_loss=state.train_loss, val_loss=state.val_loss,
                   val_ppl=val_ppl, tokens=state.tokens, elapsed_s=state.elapsed_s, **metrics)
            if task.sample is not None:
                prompt, text = task.sample(model)
                events("sample", step=state.step, prompt=prompt, text=text)
                with open(run.samples_file, "a", encoding="utf-8") as handle:
                    handle.write(f"--- step {state.step}\n{prompt}{text}\n")
            plotter.request(events.history)
            model.train()
        dist.barrier()

    def finish() -> dict[str, Any]:
        results: dict[str, Any] = {}
        if dist.is_main:
            model.eval()
            with torch.no_grad(), autocast:
                results = dict(task.finish(model))
            events("results", step=state.step, **results)
            write_atomic(run.directory / RESULTS_FILE, json.dumps(results, indent=2) + "\n")
        dist.barrier()
        return results

    results: dict[str, Any] = {}
    batches = task.train_batches(state.epoch, state.batch)
    status = "completed"
    model.train()
    started = time.perf_counter() - state.elapsed_s
    window_start, window_tokens = time.perf_counter(), 0
    evaluated_at = checkpointed_at = -1
    with _Interrupt() as interrupt:
        try:
            while state.step < steps:
                lr = learning_rate(state.step, lr=train.lr, total_steps=steps,
                                   warmup_steps=train.warmup_steps, min_lr=train.min_lr,
                                   schedule=train.schedule)
                set_learning_rate(optimizer, lr)
                loss_sum = torch.zeros((), device=device)
                for micro in range(train.grad_accum):
                    batch, batches = _next_batch(task, state, batches)
                    batch = task.to_device(batch, device)
                    last = micro == train.grad_accum - 1
                    sync = contextlib.nullcontext() if last or not dist.enabled else trained.no_sync()
                    with sync:
                        with autocast:
                            loss = task.loss(trained, batch)
                        (loss / train.grad_accum).backward()
                    loss_sum += loss.detach().float()
                    window_tokens += task.tokens_per_batch * dist.world_size
                grad_norm = None
                if train.grad_clip is not None:
                    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                state.step += 1
                state.tokens += task.tokens_per_batch * train.grad_accum * dist.world_size
                state.elapsed_s = time.perf_counter() - started
                if state.step % train.log_every == 0 or state.step == steps:
                    loss_value = dist.mean(loss_sum / train.grad_accum).item()
                    now = time.perf_counter()
                    events("step", step=state.step, epoch=state.epoch + state.batch
                           / max(1, task.batches_per_epoch), loss=loss_value, lr=lr,
                           grad_norm=None if grad_norm is None else float(grad_norm),
                           tokens=state.tokens, tokens_per_s=window_tokens / max(now - window_start, 1e-9),
                           elapsed_s=state.elapsed_s)
                    window_start, window_tokens = now, 0
                if state.step % train.eval_every == 0:
                    evaluate()
                    evaluated_at = state.step
                every = train.checkpoint_every or train.eval_every
                if state.step % every == 0 and state.step < steps:
                    checkpoint()
                    checkpointed_at = state.step
                if dist.any(interrupt.requested, device):
                    status = "interrupted"
                    break
            if status == "completed" and evaluated_at != state.step:
                evaluate()
            if checkpointed_at != state.step:
                checkpoint()
            if dist.is_main:
                plotter.finish(events.history)
            if status == "completed" and task.finish is not None:
                results = finish()
        except KeyboardInterrupt:  # a second Ctrl-C: stop at once, no checkpoint
            status = "interrupted"
            raise
        except BaseException:
            status = "failed"
            raise
        finally:
            events("end", step=state.step, status=status, elapsed_s=state.elapsed_s,
                   tokens=state.tokens, train_loss=state.train_loss, val_loss=state.val_loss)
            events.close()
    if status == "interrupted":
        raise TrainingInterrupted(str(run.directory), state.step)
    return LoopResult(state=state, status=status, total_steps=steps, history=events.history,
                      results=results)


def _next_batch(task: TrainTask, state: LoopState, batches: Iterator[Any]) -> tuple[Any, Iterator[Any]]:
    """The next micro-batch, moving to a fresh epoch when this one runs out."""
    for _ in range(2):
        try:
            batch = next(batches)
        except StopIteration:
            state.epoch, state.batch = state.epoch + 1, 0
            batches = task.train_batches(state.epoch, 0)
            continue
        state.batch += 1
        return batch, batches
    raise LlmbricksError("the training data yields no batch: use more data or a smaller batch")


def _wrap(model: nn.Module, train: TrainConfig, dist: Distributed, device: torch.device) -> nn.Module:
    """DDP across ranks, then torch.compile when asked; the loop trains through the wrapper."""
    wrapped = model
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        wrapped = DistributedDataParallel(model, device_ids=ids)
    if train.compile:
        wrapped = torch.compile(wrapped)
    return wrapped


class _Plotter:
    """Redraws ``loss.png`` in a background thread, so training never waits for matplotlib.

    At most one drawing is in flight; a request while one runs is dropped (the next evaluation,
    or ``finish``, draws the newer curve). ``finish`` draws the final curve and waits for it.
    """

    def __init__(self, run: Run) -> None:
        self.run = run
        self.thread: threading.Thread | None = None

    def request(self, history: list[dict[str, Any]]) -> None:
        if self.thread is not None and self.thread.is_alive():
            return
        self.thread = threading.Thread(target=self._draw, args=(list(history),), daemon=True)
        self.thread.start()

    def finish(self, history: list[dict[str, Any]]) -> None:
        if self.thread is not None:
            self.thread.join()
        self._draw(list(history))

    def _draw(self, history: list[dict[str, Any]]) -> None:
        from .plots import plot_losses

        try:
            plot_losses(history, self.run.plot_file)
        except (OSError, ValueError, RuntimeError) as exc:  # a plot must never stop training
            import warnings

            warnings.warn(f"could not draw {self.run.plot_file}: {exc}", stacklevel=2)
