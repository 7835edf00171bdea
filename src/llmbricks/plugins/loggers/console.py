"""The console logger: what a person watching a run sees.

A terminal gets a ``rich`` progress bar with eval results, samples and checkpoints printed above
it; anything else (CI, a pipe, a log file) gets one plain line per event, so logs stay greppable
and free of escape codes.
"""

from __future__ import annotations

import math
import sys
import time
from datetime import timedelta
from typing import Any, Literal

import click
from pydantic import Field
from rich.console import Console
from rich.text import Text

from llmbricks.core.component import ParamsModel
from llmbricks.core.interfaces import Logger


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite(value: Any) -> bool:
    return _number(value) and math.isfinite(value)


def duration(seconds: float | None) -> str:
    """``H:MM:SS`` (``-`` when unknown)."""
    if not _finite(seconds) or seconds < 0:
        return "-"
    return str(timedelta(seconds=round(seconds)))


def human_count(n: int | None) -> str:
    """``124.44M``-style counts for parameters and tokens."""
    if not _finite(n):
        return "-"
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{suffix}"
    return str(n)


class StepRate:
    """Steps per second in this session, for the ETA.

    The first logged step is measured from ``start``; later ones from that first step, so one-off
    startup costs (data loading, compilation, the first CUDA calls) stop skewing the ETA once the
    loop runs. A resumed run's count starts at the step it resumed from.
    """

    def __init__(self) -> None:
        self._anchor: tuple[int, float] | None = None
        self._from_start = False

    def begin(self, step: int, now: float) -> None:
        self._anchor, self._from_start = (step, now), True

    def observe(self, step: int, now: float) -> float | None:
        if self._anchor is None:
            self._anchor = (step, now)
            return None
        rate = None
        done, seconds = step - self._anchor[0], now - self._anchor[1]
        if done > 0 and seconds > 0:
            rate = done / seconds
        if self._from_start:
            self._anchor, self._from_start = (step, now), False
        return rate


# --- one line per event -----------------------------------------------------------------------


def start_line(f: dict[str, Any]) -> str:
    step, max_steps = f.get("step") or 0, f.get("max_steps")
    head = f"resume at step {step}/{max_steps}" if f.get("resumed") else f"start {max_steps} steps"
    parts = [head, f"{human_count(f.get('params'))} params"]
    if _finite(f.get("tokens_per_step")):
        parts.append(f"{f['tokens_per_step']:,} tokens/step")
    if f.get("world_size") not in (None, 1):
        parts.append(f"{f['world_size']} processes")
    if f.get("config_name"):
        parts.append(f"config {f['config_name']}")
    if f.get("run_dir"):
        parts.append(f"run {f['run_dir']}")
    return " | ".join(parts)


def step_stats(f: dict[str, Any]) -> list[str]:
    """Loss, learning rate and throughput, each left out when the loop did not measure it."""
    parts = []
    if _number(f.get("loss")):
        parts.append(f"loss {f['loss']:.4f}")  # nan shows as "nan": a diverged run should say so
    if _number(f.get("lr")):
        parts.append(f"lr {f['lr']:.2e}")
    if _finite(f.get("tokens_per_s")):
        parts.append(f"{f['tokens_per_s']:,.0f} tok/s")
    return parts


def step_line(f: dict[str, Any], max_steps: int | None, eta_s: float | None) -> str:
    step = f.get("step")
    if _finite(max_steps):
        head = f"step {step!s:>{len(str(max_steps))}}/{max_steps}"
    else:
        head = f"step {step}"
    tail = f"{duration(f.get('elapsed_s'))} elapsed, eta {duration(eta_s)}"
    return " | ".join([head, *step_stats(f), tail])


def loss_parts(f: dict[str, Any]) -> list[str]:
    """``train L`` and ``val L`` for the losses an event carries."""
    return [f"{name} {f[key]:.4f}" for name, key in (("train", "train_loss"), ("val", "val_loss"))
            if _number(f.get(key))]


def accuracy_parts(f: dict[str, Any]) -> list[str]:
    """``val acc 96.0%`` for every ``<split>_accuracy`` an event carries (classifiers)."""
    return [f"{key.removesuffix('_accuracy')} acc {value:.1%}" for key, value in f.items()
            if key.endswith("_accuracy") and _number(value)]


def eval_line(f: dict[str, Any]) -> str:
    parts = [f"eval step {f.get('step')}", *loss_parts(f)]
    if _number(f.get("val_ppl")):
        parts.append(f"ppl {f['val_ppl']:.2f}")
    return " | ".join([*parts, *accuracy_parts(f)])


def results_line(f: dict[str, Any]) -> str:
    """The final results: accuracies, then the other numbers and the files written."""
    parts = ["results", *accuracy_parts(f)]
    for key, value in f.items():
        if key in ("step", "time") or key.endswith("_accuracy"):
            continue
        if _number(value):  # losses as the eval lines print them; other numbers 4 digits
            shown = f"{value:.4f}" if key.endswith("_loss") else f"{value:.4g}"
            parts.append(f"{key.replace('_', ' ')} {shown}")
        elif isinstance(value, str):
            parts.append(f"{key.replace('_', ' ')} {value}")
    return " | ".join(parts)


#: A long prompt is cut from its start down to this many characters before the continuation is.
SAMPLE_PROMPT_TAIL = 20


def sample_line(f: dict[str, Any], limit: int) -> str:
    def flat(value: Any) -> str:
        return str(value or "").replace("\r", "\\r").replace("\n", "\\n")

    prompt, text = flat(f.get("prompt")), flat(f.get("text"))
    if len(prompt) + len(text) > limit:
        # The continuation is what a sample shows: a long prompt (an instruction template)
        # gives up its start first, keeping its last characters (e.g. "### Response:\n").
        keep = max(min(len(prompt), SAMPLE_PROMPT_TAIL), limit - 3 - len(text))
        if keep < len(prompt):
            prompt = "..." + prompt[len(prompt) - keep:]
    text = prompt + text
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"sample step {f.get('step')}: {text}"


def end_line(f: dict[str, Any]) -> str:
    parts = [f"end step {f.get('step')}", str(f.get("status") or "?"),
             f"{duration(f.get('elapsed_s'))} elapsed"]
    if _finite(f.get("tokens")):
        parts.append(f"{human_count(f['tokens'])} tokens")
    return " | ".join([*parts, *loss_parts(f)])


# --- the logger -------------------------------------------------------------------------------


class ConsoleLogger(Logger):
    """A live progress bar with step, loss, lr, tokens/s and ETA; plain lines when not a terminal."""

    name = "console"

    class Params(ParamsModel):
        mode: Literal["auto", "bar", "plain"] = Field(
            "auto", description="bar: a live progress bar; plain: one line per event (CI, pipes); "
                                "auto: bar when stdout is a terminal")
        sample_chars: int = Field(200, ge=20, le=1 << 24, description="samples are cut to this many characters")

    def __init__(self, params: Params, console: Console | None = None) -> None:
        """``console`` replaces the rich console the bar draws on (tests, notebooks)."""
        super().__init__(params)
        self._console = console
        self._bar: bool | None = None  # decided at the first event (normally `start`)
        self._progress: Any = None
        self._task: Any = None
        self._max_steps: int | None = None
        self._rate = StepRate()

    def log(self, event: str, **fields: Any) -> None:
        now = fields.get("time")
        now = now if _finite(now) else time.time()
        if self._bar is None:
            self._bar = self._wants_bar()
        if event == "start":
            self._max_steps = fields.get("max_steps")
            self._rate.begin(fields.get("step") or 0, now)
            self._say(start_line(fields))
            if self._bar:
                self._start_bar(fields.get("step") or 0)
        elif event == "resume":
            self._rate.begin(fields.get("step") or 0, now)
        elif event == "step":
            self._step(fields, now)
        elif event == "eval":
            self._say(eval_line(fields), style="bold")
        elif event == "sample":
            self._say(sample_line(fields, self.params.sample_chars), style="dim")
        elif event == "checkpoint":
            self._say(f"checkpoint step {fields.get('step')} -> {fields.get('path')}")
        elif event == "results":
            self._say(results_line(fields), style="bold")
        elif event == "end":
            if self._progress is not None and _finite(fields.get("step")):
                self._progress.update(self._task, completed=fields["step"], refresh=True)
            self._stop_bar()
            self._say(end_line(fields), style="bold")

    def close(self) -> None:
        self._stop_bar()

    # --- output -------------------------------------------------------------------------------

    def _wants_bar(self) -> bool:
        if self.params.mode != "auto":
            return self.params.mode == "bar"
        return self._console.is_terminal if self._console is not None else sys.stdout.isatty()

    def _step(self, fields: dict[str, Any], now: float) -> None:
        step = fields.get("step")
        rate = self._rate.observe(step, now) if _finite(step) else None
        eta = None
        if rate and _finite(self._max_steps) and _finite(step):
            eta = max(self._max_steps - step, 0) / rate
        if self._progress is None:
            self._say(step_line(fields, self._max_steps, eta))
            return
        if _finite(step):
            self._progress.update(self._task, completed=step)
        self._progress.update(self._task, stats=" | ".join(step_stats(fields)), eta=duration(eta),
                              refresh=True)  # now, not at the next tick: lines may print above

    def _say(self, line: str, style: str = "") -> None:
        if not self._bar:
            click.echo(line)
            return
        console = self._progress.console if self._progress is not None else self._get_console()
        console.print(Text(line, style=style))  # Text: brackets in samples are not markup

    def _get_console(self) -> Console:
        if self._console is None:
            self._console = Console(force_terminal=True if self.params.mode == "bar" else None)
        return self._console

    def _start_bar(self, step: int) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._stop_bar()
        self._progress = Progress(
            TextColumn("[bold]step"), MofNCompleteColumn(), BarColumn(),
            TextColumn("{task.fields[stats]}"), TimeElapsedColumn(),
            TextColumn("elapsed, eta {task.fields[eta]}"), console=self._get_console())
        total = self._max_steps if _finite(self._max_steps) else None
        self._task = self._progress.add_task("train", total=total, completed=step, stats="",
                                             eta="-")
        self._progress.start()

    def _stop_bar(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
