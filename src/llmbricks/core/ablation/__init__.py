"""Ablations: a grid of config variants, each trained over seeds, compared with statistics.

``make_plan`` expands and validates the grid; ``run_ablation`` trains every missing run (skipping
finished ones, resuming interrupted ones) and writes the report; ``build_report`` rebuilds the
report from the directory alone. ``llmbricks ablate`` is a thin layer over these.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .execute import execute, prepare
from .jobs import AblationInterrupted, Job
from .plan import AblationPlan, Variant, make_plan
from .rungs import ASYNC

__all__ = ["AblationInterrupted", "AblationPlan", "AblationResult", "Job", "Variant",
           "make_plan", "run_ablation"]


@dataclass
class AblationResult:
    directory: Path
    ran: list[dict[str, Any]]          # the records of the runs trained by this call
    skipped: int                        # runs already completed by an earlier call
    rows: list[dict[str, Any]]          # one per run (results.csv)
    summary: list[dict[str, Any]]       # one per variant (summary.csv)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [row for row in self.rows if row.get("status") not in ("completed", "pruned")]


def run_ablation(plan: AblationPlan, directory: str | Path, *, executor: str = "local",
                 jobs: int = 1, address: str | None = None,
                 on_start: Callable[[list[Job], list[Job]], None] | None = None,
                 on_done: Callable[[Job, dict[str, Any]], None] | None = None) -> AblationResult:
    """Train every run of ``plan`` not yet completed in ``directory``, then write the report.

    A failed run is recorded with its error and does not stop the others (``result.failed``).
    """
    from .report import build_report

    directory = Path(directory)
    todo, done = prepare(plan, directory)
    if on_start is not None:
        on_start(todo, done)
    if plan.halving is not None and plan.halving.get("mode") == ASYNC:  # ASHA: no waiting
        from .asha import run_asha

        ran = run_asha(plan, directory, executor=executor, workers=jobs, address=address,
                       on_done=on_done)
    elif plan.halving is not None:  # rung by rung, the worse half stopping after each
        from .halving import run_halving

        ran = run_halving(plan, directory, executor=executor, workers=jobs, address=address,
                          on_done=on_done)
    else:
        ran = execute(todo, executor=executor, workers=jobs, address=address, on_done=on_done)
    summary, rows = build_report(directory)
    return AblationResult(directory=directory, ran=ran, skipped=len(done), rows=rows,
                          summary=summary)
