"""Asynchronous successive halving (``--asha``): promote a variant without waiting for its rung.

ASHA (Li et al. 2020, "A System for Massively Parallel Hyperparameter Tuning", eta = 2) on a
finite grid, the unit promoted being a variant (all its seeds). The rungs are those of the
synchronous mode (``rungs.py``); a variant *completes* rung r when every seed of it evaluated at
its rung-r step (a run that failed in this call counts as done, with no loss; the next call
retries it). Whenever a run finishes, for the rungs from the top down:

    C_r = the variants that completed rung r
    promote from r: the top floor(|C_r| / 2) of C_r by mean loss at rung r (no loss = worst),
                    and the baseline as soon as it completes any rung (it trains to the end),
                    each at most once

A promoted variant's seeds train on (``train --resume``, with ``--pause-at`` the next rung's
step below the last rung) while other runs of the lower rung still train, so ``--jobs`` slots do
not idle at a rung's end: its jobs join the executor's queue (``execute(..., more=...)``).

The trade, as in ASHA: a promotion is irrevocable. With few variants completed, the top half is
judged on few; one promoted early may rank worse once the rest complete, and it keeps training
(so a rung may promote more than half of its variants). The decisions depend on the order the runs finished, which the directory
cannot tell afterwards: each promotion is written to ``ABL/halving.json`` (atomically, before
its jobs are queued). A rerun of the same command reads them back, never un-promotes, and trains
what is missing; the report reads them too (``halving.halving_view``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..store.atomic import write_atomic
from .execute import execute, make_job
from .halving import (
    PAUSED,
    async_rungs,
    by_run_key,
    mean_loss,
    promotions_in_runs,
    reached,
    read_promotions,
    rung_done,
    rung_losses,
    write_decisions,
)
from .jobs import Job
from .results import RunEvents, read_runs


def promote(halving: Mapping[str, Any], baseline: str, variants: Sequence[str],
            runs: Sequence[tuple[dict[str, Any], RunEvents]],
            promoted: Sequence[tuple[str, int]],
            tried: Callable[[str, int, int], bool] = lambda v, k, r: False,
            busy: Callable[[str, int, int], bool] = lambda v, k, r: False
            ) -> list[tuple[str, int]]:
    """The promotions to make now, ``(variant, from rung)``, given those ``promoted`` before.

    ``tried(variant, seed, rung)``: a failed run that was already retried (done, no loss);
    ``busy(variant, seed, rung)``: a run still queued or training to ``rung``, which is not done
    yet even if the run already evaluated there (it is still writing its checkpoint).
    """
    by_run = by_run_key(runs)
    seeds = sorted({k for _, k in by_run})
    made = set(promoted)
    new: list[tuple[str, int]] = []
    for r in reversed(range(halving["rungs"] - 1)):  # the top rung first, as ASHA does
        here = [v for v in variants if r == 0 or (v, r - 1) in made]
        complete = [v for v in here if not any(busy(v, k, r) for k in seeds)
                    and rung_done(halving, v, r, by_run, tried)]
        means = {v: mean_loss(rung_losses(halving, v, r, by_run)) for v in complete}
        ranked = sorted(complete, key=lambda v: (means[v], variants.index(v)))
        top = ranked[:len(complete) // 2]
        for variant in ranked:
            if (variant in top or variant == baseline) and (variant, r) not in made:
                made.add((variant, r))
                new.append((variant, r))
    return new


def rung_of(promoted: Sequence[tuple[str, int]], variant: str) -> int:
    """The rung ``variant`` trains to: the highest it was promoted to, else 0."""
    return max((r + 1 for v, r in promoted if v == variant), default=0)


def run_asha(plan: Any, directory: Path, *, executor: str, workers: int, address: str | None,
             on_done: Callable[[Any, dict[str, Any]], None] | None = None
             ) -> list[dict[str, Any]]:
    """Train every variant to rung 0 and promote as runs finish (the executor's ``more``).
    Returns the records of the runs trained by this call."""
    halving, names, last = plan.halving, [v.name for v in plan.variants], plan.halving["rungs"] - 1
    runs = read_runs(directory)
    recorded = read_promotions(directory)
    promoted = recorded if recorded is not None else promotions_in_runs(halving, names, runs)
    tried: set[tuple[str, int, int]] = set()
    busy: dict[tuple[str, int], int] = {}  # (variant, seed) queued or training -> its rung

    def jobs_of(variants: Sequence[str], runs: Sequence[tuple[dict[str, Any], RunEvents]]
                ) -> list[Job]:
        rows = by_run_key(runs)
        jobs = []
        for variant in variants:
            rung = rung_of(promoted, variant)
            step = halving["steps"][variant][rung]
            for k in range(len(plan.seeds)):
                row, events = rows[(variant, k)]
                if reached(row, events, step, rung == last) or (variant, k, rung) in tried:
                    continue
                tried.add((variant, k, rung))
                busy[(variant, k)] = rung
                jobs.append(make_job(plan, directory, variant, k,
                                     pause_at=None if rung == last else step))
        return jobs

    def retried(variant: str, k: int, rung: int) -> bool:
        return (variant, k, rung) in tried  # a failed run of this call: done, with no loss

    def decide(runs: Sequence[tuple[dict[str, Any], RunEvents]]) -> list[str]:
        """Make and record the promotions due now; return the variants promoted."""
        new = promote(halving, plan.baseline, names, runs, promoted, tried=retried,
                      busy=lambda v, k, r: busy.get((v, k)) == r)
        promoted.extend(new)
        write_decisions(directory, halving, async_rungs(halving, names, runs, promoted, retried),
                        promoted)  # before any of their jobs is queued
        return [variant for variant, _ in new]

    def done(job: Any, record: dict[str, Any]) -> None:
        rung = busy.pop((job.variant, job.seed_index))
        if "--pause-at" in job.argv and record["status"] == "completed":
            record.update(status=PAUSED, rung=rung)  # it stopped at the rung, as asked
            write_atomic(job.record, json.dumps(record, indent=2) + "\n")
        if on_done is not None:
            on_done(job, record)

    def more() -> list[Job]:
        runs = read_runs(directory)
        return jobs_of(decide(runs), runs)

    decide(runs)
    jobs = jobs_of(names, runs)
    if not jobs:
        return []
    return execute(jobs, executor=executor, workers=workers, address=address, on_done=done,
                   more=more)
