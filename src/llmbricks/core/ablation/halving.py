"""Successive halving: stop spending on the variants that are clearly behind.

With ``--halving`` each variant's budget of S steps is cut into R rungs at S/2^(R-1), ...,
S/2, S steps. Every variant still alive trains all its seeds to the rung's step (``train
--pause-at``: an evaluation and a checkpoint there, the learning-rate schedule still counting
all S steps, so a run resumed past the rung is exactly the run that never paused). Then the
variants are ranked by their mean validation loss at the rung and the worse half stop:

    alive_0 = every variant
    pruned_r = the floor(|alive_r| / 2) worst of alive_r by mean loss at rung r (never the
               baseline: every comparison is made against it, so it trains to the end)
    alive_{r+1} = alive_r - pruned_r

R is the number of halvings that leave 2 variants (the baseline and the best other), plus the
full rung: 4 variants give rungs S/2 and S; 8 give S/4, S/2 and S. A variant pruned at rung r is
compared with the baseline at rung r's step only (same seeds, same step: paired), never with
variants that trained longer.

Everything is decided from the directory alone (which runs evaluated at which rung), so the
same command resumes an interrupted halving, and the report rebuilds the decisions. Rungs are
synchronous: a rung is decided once every run of it has finished or failed (a failed run counts
as no loss; a variant with no loss at a rung is ranked last).

The asynchronous mode (``--asha``, ``asha.py``) promotes a variant as soon as it ranks in the top
half of those that completed its rung; its promotions depend on the order the runs finished, so
they are recorded in ``ABL/halving.json`` (``read_promotions``) and the report reads them back
(``halving_view`` with ``promoted``).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..store.atomic import write_atomic
from .results import RunEvents, finite
from .rungs import ASYNC

PAUSED = "paused"
PRUNED = "pruned"
HALVING_FILE = "halving.json"


@dataclass
class Rung:
    """One rung: who trained to it, their losses there, and who stopped after it."""

    index: int
    alive: list[str]                          # the variants that train to this rung
    losses: dict[str, dict[int, float]]       # variant -> seed index -> val loss at the rung
    pruned: list[str]                         # the variants that stop here (none at the last)
    settled: bool                             # every run of the rung finished or failed


RunsByKey = dict[tuple[str, int], tuple[dict[str, Any], RunEvents]]


def by_run_key(runs: Sequence[tuple[dict[str, Any], RunEvents]]) -> RunsByKey:
    """``(variant, seed index) -> (row, events)``: how every rung looks a run up."""
    return {(row["variant"], row["seed_index"]): (row, events) for row, events in runs}


def loss_at(events: RunEvents, step: int) -> float | None:
    """The validation loss of the evaluation at ``step``, if the run made one there."""
    for event in events.evals:
        if event["step"] == step and finite(event.get("val_loss")):
            return float(event["val_loss"])
    return None


def reached(row: Mapping[str, Any], events: RunEvents, step: int, last: bool) -> bool:
    """Whether a run finished this rung: the last rung needs the completed run, the others an
    evaluation at the rung's step (the run paused there, or went on and was stopped later: a
    resumed run drops the evaluations after its checkpoint, so one that is there stands)."""
    if last:
        return row["status"] == "completed"
    return loss_at(events, step) is not None


def rung_done(halving: Mapping[str, Any], variant: str, rung: int,
              by_run: Mapping[tuple[str, int], tuple[dict[str, Any], RunEvents]],
              tried: Callable[[str, int, int], bool] = lambda v, k, r: False) -> bool:
    """Whether every seed of ``variant`` finished ``rung``: it reached the rung's step, or it
    failed and was already retried (``tried(variant, seed, rung)``: done, with no loss)."""
    step, last = halving["steps"][variant][rung], rung == halving["rungs"] - 1
    runs = [(k, row, events) for (v, k), (row, events) in by_run.items() if v == variant]
    return all(reached(row, events, step, last) or (row["status"] == "failed" and tried(variant, k, rung))
               for k, row, events in runs)


def rung_losses(halving: Mapping[str, Any], variant: str, rung: int,
                by_run: Mapping[tuple[str, int], tuple[dict[str, Any], RunEvents]]
                ) -> dict[int, float]:
    """seed index -> the validation loss of ``variant``'s runs that reached ``rung``."""
    step, last = halving["steps"][variant][rung], rung == halving["rungs"] - 1
    losses = {}
    for (v, k), (row, events) in by_run.items():
        loss = loss_at(events, step) if v == variant and reached(row, events, step, last) else None
        if loss is not None:
            losses[k] = loss
    return losses


def mean_loss(losses: Mapping[int, float]) -> float:
    """The mean over the seeds; no loss at all ranks last (infinity)."""
    return statistics.fmean(losses.values()) if losses else float("inf")


def prune(losses: Mapping[str, Mapping[int, float]], alive: Sequence[str], baseline: str) -> list[str]:
    """The floor(n/2) worst of ``alive`` by mean loss (no loss = worst), never the baseline."""
    worst_first = sorted(alive, key=lambda v: (-mean_loss(losses.get(v, {})), -alive.index(v)))
    return [v for v in worst_first if v != baseline][:len(alive) // 2]


def decide(halving: Mapping[str, Any], baseline: str, variants: Sequence[str],
           runs: Sequence[tuple[dict[str, Any], RunEvents]],
           tried: Callable[[str, int, int], bool] = lambda v, k, r: False) -> list[Rung]:
    """The rungs so far, decided from the runs: the last one is the rung being trained (or the
    final one). ``tried(variant, seed, rung)``: a failed run that was already retried now."""
    by_run = by_run_key(runs)
    rungs: list[Rung] = []
    alive = list(variants)
    for r in range(halving["rungs"]):
        last = r == halving["rungs"] - 1
        losses = {v: rung_losses(halving, v, r, by_run) for v in alive}
        settled = all(rung_done(halving, v, r, by_run, tried) for v in alive)
        pruned = prune(losses, alive, baseline) if settled and not last else []
        rungs.append(Rung(r, list(alive), losses, pruned, settled))
        if not settled or last:
            break
        alive = [v for v in alive if v not in pruned]
    return rungs


def pruned_at(rungs: Sequence[Rung]) -> dict[str, int]:
    """variant -> the rung it stopped after."""
    return {variant: rung.index for rung in rungs for variant in rung.pruned}


def write_decisions(directory: Path, halving: Mapping[str, Any], rungs: Sequence[Rung],
                    promoted: Sequence[tuple[str, int]] | None = None) -> Path:
    """``ABL/halving.json``: each rung's variants, their mean loss there and who stopped (for
    people and tools; the synchronous report decides again from the runs). ``promoted``
    (asynchronous mode): every promotion so far, ``(variant, from rung)`` in the order made,
    which the report and a resume read back (``read_promotions``)."""
    data: dict[str, Any] = {"rungs": halving["rungs"], "steps": halving["steps"], "decided": [
        {"rung": rung.index, "settled": rung.settled, "alive": rung.alive, "pruned": rung.pruned,
         "mean_val_loss": {v: statistics.fmean(ls.values()) if ls else None
                           for v, ls in rung.losses.items()}}
        for rung in rungs]}
    if promoted is not None:
        data = {"mode": ASYNC, **data,
                "promoted": [{"variant": v, "from_rung": r} for v, r in promoted]}
    return write_atomic(directory / HALVING_FILE, json.dumps(data, indent=2) + "\n")


def read_promotions(directory: str | Path) -> list[tuple[str, int]] | None:
    """The promotions ``ABL/halving.json`` records, ``(variant, from rung)`` in the order made;
    None when it records none (no file, an unreadable one, or a synchronous halving's)."""
    try:
        data = json.loads((Path(directory) / HALVING_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("mode") != ASYNC:
        return None
    return [(str(p["variant"]), int(p["from_rung"])) for p in data.get("promoted", [])
            if isinstance(p, dict) and "variant" in p and "from_rung" in p]


def promotions_in_runs(halving: Mapping[str, Any], variants: Sequence[str],
                       runs: Sequence[tuple[dict[str, Any], RunEvents]]) -> list[tuple[str, int]]:
    """The promotions the runs show (a run evaluated past a rung's step), for an asynchronous
    directory whose ``halving.json`` was lost; one promoted but not yet trained is not seen."""
    promoted = []
    for r in range(halving["rungs"] - 1):
        for variant in variants:
            step = halving["steps"][variant][r]
            if any(row["variant"] == variant and any(e["step"] > step for e in events.evals)
                   for row, events in runs):
                promoted.append((variant, r))
    return promoted


def async_rungs(halving: Mapping[str, Any], variants: Sequence[str],
                runs: Sequence[tuple[dict[str, Any], RunEvents]],
                promoted: Sequence[tuple[str, int]],
                tried: Callable[[str, int, int], bool] = lambda v, k, r: False) -> list[Rung]:
    """The asynchronous mode's rungs as the promotions made them: rung r's ``alive`` are the
    variants promoted to it (every variant at rung 0); its ``pruned`` those that finished it and
    were not promoted from it (so far, while the ablation runs; never at the last rung)."""
    by_run = by_run_key(runs)
    made = set(promoted)
    last = halving["rungs"] - 1
    rungs: list[Rung] = []
    for r in range(halving["rungs"]):
        alive = [v for v in variants if r == 0 or (v, r - 1) in made]
        if not alive:
            break
        done = {v: rung_done(halving, v, r, by_run, tried) for v in alive}
        pruned = [v for v in alive if done[v] and (v, r) not in made and r != last]
        rungs.append(Rung(r, alive, {v: rung_losses(halving, v, r, by_run) for v in alive},
                          pruned, all(done.values())))
    return rungs


def run_halving(plan: Any, directory: Path, *, executor: str, workers: int, address: str | None,
                on_done: Callable[[Any, dict[str, Any]], None] | None = None
                ) -> list[dict[str, Any]]:
    """Train rung after rung: every alive variant's seeds to the rung's step, then decide who
    stops. Returns the records of the runs trained by this call."""
    from .execute import execute, make_job
    from .results import read_runs

    halving, last = plan.halving, plan.halving["rungs"] - 1
    names = [v.name for v in plan.variants]
    tried: set[tuple[str, int, int]] = set()
    ran: list[dict[str, Any]] = []
    while True:
        runs = read_runs(directory)
        rungs = decide(halving, plan.baseline, names, runs,
                       tried=lambda v, k, r: (v, k, r) in tried)
        write_decisions(directory, halving, rungs)
        rung = rungs[-1]
        rows = by_run_key(runs)
        jobs = []
        for variant in rung.alive:
            step = halving["steps"][variant][rung.index]
            for k in range(len(plan.seeds)):
                row, events = rows[(variant, k)]
                if reached(row, events, step, rung.index == last) or (variant, k, rung.index) in tried:
                    continue
                jobs.append(make_job(plan, directory, variant, k,
                                     pause_at=None if rung.index == last else step))
        if not jobs:
            return ran
        tried.update((job.variant, job.seed_index, rung.index) for job in jobs)

        def done(job: Any, record: dict[str, Any], rung: int = rung.index) -> None:
            if "--pause-at" in job.argv and record["status"] == "completed":
                record.update(status=PAUSED, rung=rung)   # it stopped at the rung, as asked
                write_atomic(job.record, json.dumps(record, indent=2) + "\n")
            if on_done is not None:
                on_done(job, record)

        ran += execute(jobs, executor=executor, workers=workers, address=address, on_done=done)


# --- the report's view --------------------------------------------------------------------------


def _rung_row(row: dict[str, Any], events: RunEvents, step: int, last: bool) -> dict[str, Any]:
    """A run as of a rung: its loss at the rung's step, counted when it reached the rung."""
    losses = [e["val_loss"] for e in events.evals
              if e["step"] <= step and finite(e.get("val_loss"))]
    there = reached(row, events, step, last)
    return {**row, "status": "completed" if there else row["status"],
            "final_val_loss": loss_at(events, step) if there else None,
            "best_val_loss": min(losses) if there and losses else None}


def halving_view(halving: Mapping[str, Any], baseline: str, variants: Sequence[str],
                 runs: Sequence[tuple[dict[str, Any], RunEvents]],
                 promoted: Sequence[tuple[str, int]] | None = None
                 ) -> tuple[list[Rung], list[dict[str, Any]], list[dict[str, Any]]]:
    """``(rungs, summary, rows)``: each variant's statistics at the last rung it reached, against
    the baseline at that same rung (p-values Holm-adjusted over all of them), and the runs with
    the pruned ones marked ``pruned``. Failed runs do not hold a rung back here.

    Asynchronous mode (``halving["mode"] == "async"``): the rungs follow ``promoted``, the
    promotions recorded in ``halving.json`` (``read_promotions``; when lost, those the runs
    show): a variant's last rung is the highest it was promoted to, and it is pruned once its
    runs there are done and it was not promoted further (never at the last rung)."""
    from .significance import holm
    from .stats import summarize

    if halving.get("mode") == ASYNC:
        if promoted is None:
            promoted = promotions_in_runs(halving, variants, runs)
        rungs = async_rungs(halving, variants, runs, promoted, tried=lambda v, k, r: True)
    else:
        rungs = decide(halving, baseline, variants, runs, tried=lambda v, k, r: True)
    stopped = pruned_at(rungs)
    last = halving["rungs"] - 1
    at_rung: dict[str, dict[str, Any]] = {}
    for rung in rungs:
        rung_runs = [_rung_row(row, events, halving["steps"][row["variant"]][rung.index],
                               rung.index == last)
                     for row, events in runs if row["variant"] in rung.alive]
        for line in summarize(rung_runs, baseline):
            at_rung[line["variant"]] = {**line, "rung": rung.index,
                                        "pruned": line["variant"] in stopped}
    summary = [at_rung[v] for v in variants if v in at_rung]
    adjusted = holm({s["variant"]: s["p"] for s in summary if not s["is_baseline"]})
    for line in summary:
        line["p_holm"] = adjusted.get(line["variant"])
    rows = [{**row, "status": PRUNED} if row["variant"] in stopped and row["status"] == PAUSED
            else row for row, _ in runs]
    return rungs, summary, rows
