"""The one training loop every trainer composes.

A trainer hands over a ``TrainTask``: its model, its batches, its loss and its evaluation. The
loop owns everything else: AdamW, the learning-rate schedule, gradient accumulation and clipping,
the budget, evaluation and samples, precision, compilation, data parallelism, checkpoints,
resuming and Ctrl-C. One optimizer step is

    for each of grad_accum micro-batches:  (loss(model, batch) / grad_accum).backward()
    clip_grad_norm_(grad_clip);  lr = schedule.rate(step);  optimizer step;  zero grads

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
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..config import Config, TrainConfig
from ..errors import LlmbricksError
from ..interfaces import Logger, Model
from ..store.atomic import kill_point, write_atomic
from ..store.runs import Checkpoint, Run, load_checkpoint
from .distributed import Distributed, pick_precision
from .optim import build_optimizer, build_schedule, set_learning_rate

#: Final results of a completed run (``TrainTask.finish``): test metrics, files written.
RESULTS_FILE = "results.json"
#: ``train.on_nonfinite: skip`` gives up (and stops as ``stop`` would) after this many skipped
#: optimizer steps in a row: a run that cannot take one good step is not going to recover.
MAX_SKIPS_IN_A_ROW = 10


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
    #: Whether ``val_loss`` is a next-token cross-entropy, so ``exp(val_loss)`` is a perplexity.
    #: ``None``: the model's head decides (per-token heads yes, a classifier's no).
    perplexity: bool | None = None

    def reports_perplexity(self) -> bool:
        if self.perplexity is not None:
            return self.perplexity
        return not isinstance(self.model, Model) or self.model.layout().head.per_token


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
    skipped_steps: int = 0   # steps skipped for a non-finite loss or grad norm (on_nonfinite: skip)


@dataclass
class LoopResult:
    state: LoopState
    status: str
    total_steps: int
    history: list[dict[str, Any]] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)


def move_batch(batch: Sequence[Tensor], device: torch.device) -> tuple[Tensor, ...]:
    """A batch that is a tuple of tensors, on ``device`` (copies overlap compute on CUDA)."""
    return tuple(t.to(device, non_blocking=True) for t in batch)


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
             history: list[dict[str, Any]] | None = None, registry: Any = None,
             pause_at: int | None = None) -> LoopResult:
    """Train ``task.model`` within ``config.train``'s budget; write checkpoints into ``run``.

    ``pause_at``: stop at that step with an evaluation and a checkpoint (status ``paused``),
    the schedule still counting the whole budget, so ``--resume`` continues the very run an
    unpaused one would have been (successive halving trains its rungs this way).
    """
    return _Loop(task, run, config, loggers=loggers, dist=dist, device=device, resume=resume,
                 history=history, registry=registry, pause_at=pause_at).run()


class _Loop:
    """One run's moving parts. ``run`` is the loop; each thing it does at a step is a method.

    Per optimizer step: ``optimizer_step`` (accumulate, clip, step), then on schedule
    ``log_step``, ``evaluate`` and ``checkpoint``; at the end ``wrap_up`` (the last evaluation
    and checkpoint, the final plot, the trainer's ``finish``).
    """

    def __init__(self, task: TrainTask, run: Run, config: Config, *, loggers: Sequence[Logger],
                 dist: Distributed, device: torch.device, resume: Checkpoint | None,
                 history: list[dict[str, Any]] | None, registry: Any = None,
                 pause_at: int | None = None) -> None:
        self.task, self.config, self.dist, self.device = task, config, dist, device
        self.pause_at = pause_at
        self.store = run  # the run directory: checkpoints, samples, results
        self.train = train = config.train
        self.model = model = task.model
        self.optimizer = build_optimizer(model, train, registry, device)
        self.schedule = build_schedule(train, registry)
        self.state = _restored_state(resume, model, self.optimizer)
        self.tokens_per_step = task.tokens_per_batch * train.grad_accum * dist.world_size
        self.steps = total_steps(train, task.batches_per_epoch, self.tokens_per_step,
                                 train.grad_accum)
        self.trained = _wrap(model, train, dist, device)
        self.precision = pick_precision(train.precision, device)
        self.autocast = (torch.autocast(device_type=device.type, dtype=torch.bfloat16)
                         if self.precision == "bf16" else contextlib.nullcontext())
        self.events = Events(loggers, dist.is_main, history)
        self.plotter = _Plotter(run)
        self.resumed = resume is not None
        self.perplexity = task.reports_perplexity()
        self.skips_in_a_row = 0  # train.on_nonfinite: skip
        # A resumed run has its checkpoint's step checkpointed, and evaluated when the checkpoint
        # says so: the final evaluation (and its sample) is never written twice.
        self.checkpointed_at = self.state.step if resume is not None else -1
        self.evaluated_at = self.state.step if resume is not None and resume.state.get("evaluated") \
            else -1

    def run(self) -> LoopResult:
        state, events = self.state, self.events
        self.announce()
        self.batches = self.task.train_batches(state.epoch, state.batch)
        status, results = "completed", {}
        self.model.train()
        self.started = time.perf_counter() - state.elapsed_s
        self.window_start, self.window_tokens = time.perf_counter(), 0
        with _Interrupt() as interrupt:
            try:
                while state.step < self.steps:
                    if self.pause_at is not None and state.step >= self.pause_at:
                        status = "paused"
                        break
                    self.one_step()
                    if self.dist.any(interrupt.requested, self.device):
                        status = "interrupted"
                        break
                results = self.wrap_up(status)
            except KeyboardInterrupt:  # a second Ctrl-C: stop at once, no checkpoint
                status = "interrupted"
                raise
            except BaseException:
                status = "failed"
                raise
            finally:
                try:
                    events("end", step=state.step, status=status, elapsed_s=state.elapsed_s,
                           tokens=state.tokens, train_loss=state.train_loss,
                           val_loss=state.val_loss)
                    events.close()
                except Exception:
                    if status != "failed":  # never hide the error that stopped the run
                        raise
                finally:
                    self.plotter.wait()  # no half-drawn loss.png left to a dying process
        if status == "interrupted":
            raise TrainingInterrupted(str(self.store.directory), state.step)
        return LoopResult(state=state, status=status, total_steps=self.steps,
                          history=events.history, results=results)

    def announce(self) -> None:
        model, state = self.model, self.state
        self.events("start", run_dir=str(self.store.directory), step=state.step,
                    max_steps=self.steps, tokens_per_step=self.tokens_per_step,
                    params=sum(p.numel() for p in model.parameters() if p.requires_grad),
                    total_params=sum(p.numel() for p in model.parameters()),
                    resumed=self.resumed, world_size=self.dist.world_size,
                    config_name=self.config.name)
        if self.resumed:
            self.events("resume", step=state.step)

    def one_step(self) -> None:
        """One optimizer step, then what the schedule asks for at the new step."""
        train, state = self.train, self.state
        lr, loss_sum, grad_norm = self.optimizer_step()
        if state.step % train.log_every == 0 or state.step == self.steps:
            self.log_step(lr, loss_sum, grad_norm)
        if state.step % train.eval_every == 0:
            self.evaluate()
        every = train.checkpoint_every or train.eval_every
        if state.step % every == 0 and state.step < self.steps:
            self.checkpoint()

    def optimizer_step(self) -> tuple[float, Tensor, Tensor | None]:
        """``grad_accum`` micro-batches of ``(loss / grad_accum).backward()``, clip, step."""
        train, state, task, dist = self.train, self.state, self.task, self.dist
        lr = self.schedule.rate(state.step, lr=train.lr, total_steps=self.steps,
                                warmup_steps=train.warmup_steps, min_lr=train.min_lr)
        set_learning_rate(self.optimizer, lr)
        loss_sum = torch.zeros((), device=self.device)
        for micro in range(train.grad_accum):
            batch, self.batches = _next_batch(task, state, self.batches)
            batch = task.to_device(batch, self.device)
            last = micro == train.grad_accum - 1
            # DDP: all-reduce gradients once per step, on the last micro-batch only
            sync = contextlib.nullcontext() if last or not dist.enabled else self.trained.no_sync()
            with sync:
                with self.autocast:
                    loss = task.loss(self.trained, batch)
                (loss / train.grad_accum).backward()
            loss_sum += loss.detach().float()
            self.window_tokens += task.tokens_per_batch * dist.world_size
        grad_norm = self.grad_norm()
        if self.update_is_finite(lr, loss_sum, grad_norm):
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if train.grad_clip is None:
            grad_norm = None  # logged only where clipping uses it, as before the finite check
        state.step += 1
        state.tokens += self.tokens_per_step
        state.elapsed_s = time.perf_counter() - self.started
        return lr, loss_sum, grad_norm

    def grad_norm(self) -> Tensor:
        """The global gradient norm, clipped to ``train.grad_clip`` when set; the finite check needs
        it either way, and without clipping it costs one norm over the gradients."""
        params = [p for p in self.model.parameters() if p.grad is not None]
        if self.train.grad_clip is not None:
            return torch.nn.utils.clip_grad_norm_(params, self.train.grad_clip)
        return torch.nn.utils.get_total_norm([p.grad for p in params])

    def update_is_finite(self, lr: float, loss_sum: Tensor, grad_norm: Tensor) -> bool:
        """Whether this step's loss and gradient norm are finite, so AdamW may step.

        When they are not, ``train.on_nonfinite`` decides: ``stop`` raises (the last checkpoint,
        written before, stays the newest), ``skip`` drops this update with a warning and stops
        only after ``MAX_SKIPS_IN_A_ROW`` in a row. Every rank reaches the same answer.
        """
        finite = bool(torch.isfinite(loss_sum).all() & torch.isfinite(grad_norm).all())
        if not self.dist.any(not finite, self.device):
            self.skips_in_a_row = 0
            return True
        step = self.state.step + 1  # the step being taken, as it would be logged
        loss = self.dist.mean(loss_sum / self.train.grad_accum).item()
        norm = float(grad_norm)
        what = f"the loss is {loss}" if not math.isfinite(loss) else f"the gradient norm is {norm}"
        self.skips_in_a_row += 1
        skip = self.train.on_nonfinite == "skip" and self.skips_in_a_row < MAX_SKIPS_IN_A_ROW
        self.events("nonfinite", step=step, loss=loss, grad_norm=norm, lr=lr,
                    action="skip" if skip else "stop", in_a_row=self.skips_in_a_row)
        if not skip:
            if self.skips_in_a_row > 1:
                what = (f"{what}: {self.skips_in_a_row} non-finite steps in a row, the most "
                        "train.on_nonfinite=skip allows")
            raise LlmbricksError(self.nonfinite_message(step, what, lr))
        self.state.skipped_steps += 1
        if self.dist.is_main and self.skips_in_a_row == 1:  # one line per streak; each is an event
            warnings.warn(f"step {step}: {what}; skipped this update (train.on_nonfinite=skip; "
                          f"training stops after {MAX_SKIPS_IN_A_ROW} in a row)", stacklevel=2)
        return False

    def nonfinite_message(self, step: int, what: str, lr: float) -> str:
        """One line: the step, what went non-finite, the likely cause and fix, the checkpoint kept."""
        cause, fix = f"lr {lr:.3g} may be too high", "lower train.lr"
        if self.precision == "bf16":
            cause, fix = f"{cause}, or bf16 overflowed", f"{fix} or set train.precision=fp32"
        if self.train.grad_clip is None:
            fix = f"{fix}, or set train.grad_clip"
        done = [s for s, _ in self.store.checkpoint_dirs() if s < step]
        kept = (f"the last good checkpoint is step {done[-1]} in {self.store.checkpoints_dir}"
                if done else "no checkpoint was written before it")
        return f"step {step}: {what} ({cause}; {fix}); {kept}"

    def log_step(self, lr: float, loss_sum: Tensor, grad_norm: Tensor | None) -> None:
        state = self.state
        loss_value = self.dist.mean(loss_sum / self.train.grad_accum).item()
        now = time.perf_counter()
        self.events("step", step=state.step, epoch=state.epoch + state.batch
                    / max(1, self.task.batches_per_epoch), loss=loss_value, lr=lr,
                    grad_norm=None if grad_norm is None else float(grad_norm),
                    tokens=state.tokens,
                    tokens_per_s=self.window_tokens / max(now - self.window_start, 1e-9),
                    elapsed_s=state.elapsed_s)
        self.window_start, self.window_tokens = now, 0

    def evaluate(self) -> None:
        """Rank 0: the task's metrics (and a sample), logged; the plot redrawn in the background."""
        state, task, model, events = self.state, self.task, self.model, self.events
        if self.dist.is_main:
            model.eval()
            with torch.no_grad(), self.autocast:
                metrics = dict(task.evaluate(model))
            state.train_loss, state.val_loss = metrics.pop("train_loss", None), metrics.pop("val_loss", None)
            if state.val_loss is not None and (state.best_val_loss is None
                                               or state.val_loss < state.best_val_loss):
                state.best_val_loss = state.val_loss
            val_ppl = math.exp(min(state.val_loss, 50.0)) \
                if state.val_loss is not None and self.perplexity else None  # a classifier has none
            events("eval", step=state.step, train_loss=state.train_loss, val_loss=state.val_loss,
                   val_ppl=val_ppl, tokens=state.tokens, elapsed_s=state.elapsed_s, **metrics)
            if task.sample is not None:
                prompt, text = task.sample(model)
                events("sample", step=state.step, prompt=prompt, text=text)
                with open(self.store.samples_file, "a", encoding="utf-8") as handle:
                    handle.write(f"--- step {state.step}\n{prompt}{text}\n")
                kill_point("eval:sample")
            self.plotter.request(events.history)
            model.train()
        self.dist.barrier()
        self.evaluated_at = state.step

    def checkpoint(self, *, final: bool = False) -> None:
        """Save the step; ``final`` marks the last checkpoint of a completed run (resume: done)."""
        state = self.state
        if not _weights_finite(self.model):  # same weights on every rank: all of them raise
            raise LlmbricksError(self.nonfinite_message(
                state.step, "the weights are not finite after the optimizer step and were not saved",
                self.optimizer.param_groups[0]["lr"]))
        if self.dist.is_main:
            record = {**asdict(state), "evaluated": self.evaluated_at == state.step, "final": final,
                      "budget": training_budget(self.train)}
            path = self.store.save_checkpoint(state.step, self.model, self.optimizer, record,
                                              keep=self.train.keep_checkpoints)
            self.events("checkpoint", step=state.step, path=str(path))
        self.dist.barrier()
        self.checkpointed_at = state.step

    def wrap_up(self, status: str) -> dict[str, Any]:
        """The last evaluation (unless this step had it), plot and results, then the checkpoint.

        A completed run's checkpoint comes last and is marked final: it exists only once
        everything before it is written, so ``--resume`` knows the run is done; a kill before it
        resumes from the previous checkpoint and redoes the rest.
        """
        step, results = self.state.step, {}
        if status in ("completed", "paused") and self.evaluated_at != step:
            self.evaluate()
        if status != "completed" and self.checkpointed_at != step:
            self.checkpoint()
        if self.dist.is_main:
            self.plotter.finish(self.events.history)
        if status == "completed":
            if self.task.finish is not None:
                results = self.finish()
            self.checkpoint(final=True)
        return results

    def finish(self) -> dict[str, Any]:
        """Rank 0: the trainer's final results, logged and written to ``RUN/results.json``."""
        results: dict[str, Any] = {}
        if self.dist.is_main:
            self.model.eval()
            with torch.no_grad(), self.autocast:
                results = dict(self.task.finish(self.model))
            self.events("results", step=self.state.step, **results)
            write_atomic(self.store.directory / RESULTS_FILE, json.dumps(results, indent=2) + "\n")
        self.dist.barrier()
        return results


def _restored_state(resume: Checkpoint | None, model: nn.Module,
                    optimizer: torch.optim.Optimizer) -> LoopState:
    """A fresh state, or the checkpoint's (weights, optimizer and RNG restored with it)."""
    if resume is None:
        return LoopState()
    load_checkpoint(resume, model, optimizer, restore_rng=True)
    known = set(LoopState.__dataclass_fields__)
    return LoopState(**{k: v for k, v in resume.state.items() if k in known})


def training_budget(train: Any) -> dict[str, Any]:
    """The fields that say when a run is done: a final checkpoint is final under these only."""
    return {"max_steps": train.max_steps, "epochs": train.epochs, "max_tokens": train.max_tokens}


def _weights_finite(model: nn.Module) -> bool:
    """Whether every parameter is finite: one reduction per tensor, one sync in all."""
    flags = [torch.isfinite(p).all() for p in model.parameters()]
    return bool(torch.stack(flags).all()) if flags else True


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
        self.wait()
        self._draw(list(history))

    def wait(self) -> None:
        """Let a drawing in flight end (its atomic write completes or cleans up)."""
        if self.thread is not None:
            self.thread.join()

    def _draw(self, history: list[dict[str, Any]]) -> None:
        from .plots import plot_losses

        try:
            plot_losses(history, self.run.plot_file)
        except (OSError, ValueError, RuntimeError) as exc:  # a plot must never stop training
            import warnings

            warnings.warn(f"could not draw {self.run.plot_file}: {exc}", stacklevel=2)
