"""One row per run of an ablation, read from its directory alone.

Everything here reads files the executor and the runs already wrote, never the process that ran
them: ``plan.json`` (what should exist), ``runs/VARIANT/seed-K.json`` (the executor's record of
each run) and each run's ``metrics.jsonl``. So the report can be rebuilt at any time, on any
machine, from a copied directory, while or after the runs train.

Status of a run, first rule that applies:

- its record exists: the record's status (the executor saw the return code);
- no record, but its ``metrics.jsonl`` ends with an ``end`` event: that event's status;
- no record, but its run directory exists: ``interrupted`` (killed, or still training);
- nothing: ``missing`` (never started).
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import LlmbricksError
from ..store.atomic import write_atomic
from ..train.plots import read_events
from .plan import RUNS_DIR, load_plan_data

RESULTS_CSV = "results.csv"
RESULTS_JSON = "results.json"
METRICS_FILE = "metrics.jsonl"  # core.store.runs.METRICS_FILE; that module imports torch

#: The columns of ``results.csv``, in order (also the keys of each row).
ROW_FIELDS = ("variant", "seed", "seed_index", "status", "final_val_loss", "best_val_loss",
              "train_loss", "params", "tokens_per_s", "wall_s", "steps", "error", "node",
              "run_dir")

Curve = tuple[int, list[float], list[float]]  # (seed index, steps, val losses)


def finite(value: Any) -> bool:
    """A finite int or float (JSON null, nan, inf and booleans are not numbers here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class RunEvents:
    """What one run's ``metrics.jsonl`` says, with a resumed run's overwritten steps dropped.

    A run killed after its last checkpoint logged steps and evals that the resumed run trains
    again; its ``start`` event carries the step it resumed from, so later points from the killed
    session are dropped and each step counts once, from the session that produced the final
    weights (the rule ``core.train.plots`` draws ``loss.png`` by).
    """

    start: dict[str, Any] | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    end: dict[str, Any] | None = None

    @classmethod
    def from_events(cls, events: Iterable[dict[str, Any]]) -> RunEvents:
        run = cls()
        for event in events:
            kind, step = event.get("event"), event.get("step")
            if kind == "start":
                run.start, run.end = event, None  # an `end` before a new start is stale
                if finite(step):
                    run.steps = [e for e in run.steps if e["step"] <= step]
                    run.evals = [e for e in run.evals if e["step"] <= step]
            elif kind in ("step", "eval") and finite(step):
                (run.steps if kind == "step" else run.evals).append(event)
            elif kind == "end":
                run.end = event
        return run

    def val_losses(self, x: str = "step", flops_per_token: float | None = None
                   ) -> tuple[list[float], list[float]]:
        """``(x, val losses)`` of the evals that measured a finite validation loss; x is the
        step, the tokens trained, the training seconds, or FLOPs (tokens x FLOPs per token)."""
        key = {"step": "step", "tokens": "tokens", "seconds": "elapsed_s", "flops": "tokens"}[x]
        scale = flops_per_token if x == "flops" else 1
        points = [(e[key] * scale, e["val_loss"]) for e in self.evals
                  if finite(e.get("val_loss")) and finite(e.get(key)) and finite(scale)]
        return [p[0] for p in points], [p[1] for p in points]

    def last_eval(self, key: str) -> float | None:
        """``key`` of the last eval (null when that eval did not measure it, e.g. nan)."""
        value = self.evals[-1].get(key) if self.evals else None
        return value if finite(value) else None

    def tokens_per_s(self) -> float | None:
        """Training throughput: the median of the step events' ``tokens_per_s``.

        Each step event measures the tokens trained since the previous one; the median ignores
        the first window (start-up, compilation, first CUDA calls) and the windows that include
        an evaluation or a checkpoint, which a mean would let skew the comparison. Without step
        events it falls back to the ``end`` event's tokens / elapsed_s (evaluations included).
        """
        rates = [e["tokens_per_s"] for e in self.steps if finite(e.get("tokens_per_s"))]
        if rates:
            return statistics.median(rates)
        end = self.end or {}
        if finite(end.get("tokens")) and finite(end.get("elapsed_s")) and end["elapsed_s"] > 0:
            return end["tokens"] / end["elapsed_s"]
        return None

    def last_step(self) -> int | None:
        if self.end is not None and finite(self.end.get("step")):
            return int(self.end["step"])
        steps = [e["step"] for e in (*self.steps, *self.evals)]
        if steps:
            return int(max(steps))
        if self.start is not None and finite(self.start.get("step")):
            return int(self.start["step"])
        return None


def _read_json(path: Path) -> dict[str, Any] | None:
    """A record file, or None when absent or unreadable (a record being written is replaced
    atomically, so unreadable means damaged: the run then counts as never recorded)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _read_run_events(run_dir: Path) -> RunEvents:
    metrics = run_dir / METRICS_FILE
    if not metrics.is_file():
        return RunEvents()
    try:
        return RunEvents.from_events(read_events(metrics))
    except LlmbricksError:
        return RunEvents()  # a damaged file: the run reads as one that logged nothing


def _status(record: dict[str, Any] | None, events: RunEvents, run_dir: Path) -> str:
    if record is not None and record.get("status"):
        return str(record["status"])
    if events.end is not None and events.end.get("status"):
        return str(events.end["status"])
    return "interrupted" if run_dir.is_dir() else "missing"


def _row(abl_dir: Path, variant: str, seed_index: int, seeds: Sequence[int]
         ) -> tuple[dict[str, Any], RunEvents]:
    """One run's row (the ``results.csv`` columns) and its events."""
    run_dir = abl_dir / RUNS_DIR / variant / f"seed-{seed_index}"
    record = _read_json(run_dir.with_suffix(".json"))
    events = _read_run_events(run_dir)
    _, val = events.val_losses()
    start, end = events.start or {}, events.end or {}
    rec = record or {}
    wall = rec.get("wall_s") if finite(rec.get("wall_s")) else end.get("elapsed_s")
    row = {
        "variant": variant,
        "seed": rec.get("seed", seeds[seed_index] if seed_index < len(seeds) else None),
        "seed_index": seed_index,
        "status": _status(record, events, run_dir),
        "final_val_loss": events.last_eval("val_loss"),
        "best_val_loss": min(val) if val else None,
        "train_loss": events.last_eval("train_loss"),
        "params": start.get("total_params") if finite(start.get("total_params")) else None,
        "tokens_per_s": events.tokens_per_s(),
        "wall_s": wall if finite(wall) else None,
        "steps": events.last_step(),
        "error": rec.get("error") or None,
        "node": rec.get("node") or None,  # the host (local executor) or Ray node that trained it
        "run_dir": f"{RUNS_DIR}/{variant}/seed-{seed_index}",
    }
    return row, events


def _plan_jobs(plan: dict[str, Any]) -> list[tuple[str, int]]:
    """``(variant, seed index)`` for every run of the plan, variant by variant."""
    seeds = plan.get("seeds") or []
    return [(v["name"], k) for v in plan.get("variants", []) for k in range(len(seeds))]


def read_runs(abl_dir: str | Path, plan: dict[str, Any] | None = None
              ) -> list[tuple[dict[str, Any], RunEvents]]:
    """Every run of the plan as ``(row, events)``, in plan order; reads each file once."""
    abl_dir = Path(abl_dir)
    plan = plan if plan is not None else load_plan_data(abl_dir)
    seeds = plan.get("seeds") or []
    return [_row(abl_dir, variant, k, seeds) for variant, k in _plan_jobs(plan)]


def collect_rows(abl_dir: str | Path) -> list[dict[str, Any]]:
    """One row per (variant, seed index) of ``plan.json``, in plan order."""
    return [row for row, _ in read_runs(abl_dir)]


#: The x axes a curve can be drawn against (``ablate report --x``).
CURVE_AXES = ("step", "tokens", "flops", "seconds")


def curves_from(runs: Sequence[tuple[dict[str, Any], RunEvents]], x: str = "step",
                flops_per_token: dict[str, float] | None = None) -> dict[str, list[Curve]]:
    """Each variant's validation-loss curves, one per completed (or pruned) run that evaluated.

    Only those: a run cut short would drag the mean curve and stop mid-plot, while the summary
    it sits beside counts completed runs only. A pruned run stopped where successive halving
    told it to, and its curve ends there.
    """
    curves: dict[str, list[Curve]] = {}
    for row, events in runs:
        curves.setdefault(row["variant"], [])
        fpt = (flops_per_token or {}).get(row["variant"])
        steps, losses = events.val_losses(x, fpt)
        if row["status"] in ("completed", "pruned") and steps:
            curves[row["variant"]].append((row["seed_index"], steps, losses))
    return curves


def eval_curves(abl_dir: str | Path) -> dict[str, list[Curve]]:
    """``{variant: [(seed index, steps, val losses), ...]}`` for every variant of the plan."""
    return curves_from(read_runs(abl_dir))


# --- writing ------------------------------------------------------------------------------------


def _cell(value: Any) -> Any:
    """A CSV cell: null is an empty cell; floats keep full precision (``repr``)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return value


def csv_text(rows: Sequence[dict[str, Any]], fields: Sequence[str]) -> str:
    """``rows`` as CSV text with a header line (``\\n`` line ends on every platform)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(fields)
    for row in rows:
        writer.writerow([_cell(row.get(name)) for name in fields])
    return out.getvalue()


def write_results(abl_dir: str | Path, rows: Sequence[dict[str, Any]]) -> tuple[Path, Path]:
    """``ABL/results.csv`` and ``ABL/results.json`` (a list of the rows, nulls as null)."""
    abl_dir = Path(abl_dir)
    data = [{name: row.get(name) for name in ROW_FIELDS} for row in rows]
    return (write_atomic(abl_dir / RESULTS_CSV, csv_text(rows, ROW_FIELDS)),
            write_atomic(abl_dir / RESULTS_JSON, json.dumps(data, indent=2, allow_nan=False) + "\n"))
