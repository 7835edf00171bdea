"""Running an ablation: every variant x seed is a normal run, trained by its own process.

Each run is ``python -m llmbricks train ABL/configs/VARIANT.yaml --set seed=S --out
ABL/runs/VARIANT/seed-K`` in a child process, so runs share nothing (threads, memory, RNG) and
one that crashes cannot take the others down. After each run the executor writes its record,
``ABL/runs/VARIANT/seed-K.json`` (status, error, wall time). Running the same command again skips
completed runs and resumes the others from their last checkpoint (``--resume``).

Executors: ``local`` runs J children at a time with ``cores // J`` torch threads each; ``ray``
(the ``llmbricks[ray]`` extra) sends the same commands as Ray tasks to a cluster.
"""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..store.atomic import OutputKind, check_output_dir, write_atomic
from .estimate import threads_per_run
from .jobs import AblationInterrupted, Job, queue_first, run_job
from .plan import (
    CONFIGS_DIR,
    PLAN_FILE,
    RUNS_DIR,
    AblationPlan,
    load_plan_data,
    write_variant_configs,
)
from .ray_executor import run_on_ray

EXECUTORS = ("local", "ray")
#: What ``ablate`` writes: a non-empty directory without its plan is a user's, never written into.
ABLATION_KIND = OutputKind("ablation directory", (PLAN_FILE,))


def run_dir(directory: Path, variant: str, seed_index: int) -> Path:
    return directory / RUNS_DIR / variant / f"seed-{seed_index}"


def read_record(job_record: Path) -> dict[str, Any] | None:
    try:
        return json.loads(job_record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def prepare(plan: AblationPlan, directory: str | Path) -> tuple[list[Job], list[Job]]:
    """Write plan.json and the variant configs; return ``(to_run, already_done)``.

    A directory holding another plan is refused: its runs belong to another experiment.
    """
    directory = Path(directory)
    if (directory / PLAN_FILE).is_file():
        stored = load_plan_data(directory)
        if not plan.same_experiment(stored):
            raise ConfigError(f"{directory} holds another ablation (a different grid, seeds or "
                              "config); choose another --out or delete it")
        changed = plan.changed_configs(directory)
        if changed:
            raise ConfigError(f"{directory}: the config of {', '.join(changed)} changed since its "
                              f"runs were planned (compare {CONFIGS_DIR}/{changed[0]}.yaml); "
                              "undo the change, or choose another --out")
        plan.created_at = stored.get("created_at", plan.created_at)
    else:
        check_output_dir(directory, kind=ABLATION_KIND)
    directory.mkdir(parents=True, exist_ok=True)
    write_atomic(directory / PLAN_FILE, json.dumps(plan.to_data(), indent=2) + "\n")
    write_variant_configs(plan, directory)
    todo, done = [], []
    for variant, k in plan.jobs():
        job = make_job(plan, directory, variant.name, k)
        previous = read_record(job.record)
        if previous is not None and previous.get("status") == "completed" and job.run_dir.is_dir():
            done.append(job)
        else:
            todo.append(job)
    return todo, done


def make_job(plan: AblationPlan, directory: Path, variant: str, k: int,
             pause_at: int | None = None) -> Job:
    """The job that trains run ``k`` of ``variant``: resuming it when its directory holds a
    run (interrupted, failed mid-run or paused), stopping at ``pause_at`` when given."""
    path = run_dir(directory, variant, k)
    seeds = [arg for value in plan.seed_sets(k) for arg in ("--set", value)]
    argv = [sys.executable, "-m", "llmbricks", "train",
            str(directory / CONFIGS_DIR / f"{variant}.yaml"), *seeds, "--out", str(path)]
    if path.is_dir() and any(path.iterdir()):
        argv.append("--resume")  # continue from its last checkpoint
    if pause_at is not None:
        argv += ["--pause-at", str(pause_at)]
    return Job(variant, k, plan.seeds[k], path, path.with_suffix(".json"), argv)


def execute(jobs: list[Job], *, executor: str = "local", workers: int = 1,
            address: str | None = None,
            on_done: Callable[[Job, dict[str, Any]], None] | None = None,
            more: Callable[[], list[Job]] | None = None) -> list[dict[str, Any]]:
    """Run ``jobs`` and write each record as it finishes; return the records in job order.

    ``more``: called after each finished job (its record written, ``on_done`` called); the jobs
    it returns run before those still waiting (``--asha`` promotes variants this way while
    others train, and ASHA trains a promotion before new bottom-rung work). The records of
    those jobs come after the others'.
    """
    if executor not in EXECUTORS:
        raise ConfigError(f"--executor {executor}: choose one of {', '.join(EXECUTORS)}")
    if workers < 1:
        raise ConfigError(f"--jobs {workers}: give at least 1")
    threads = threads_per_run(workers)
    jobs = list(jobs)  # the executors append what ``more`` returns
    records: dict[int, dict[str, Any]] = {}

    def finished(index: int, record: dict[str, Any]) -> None:
        job = jobs[index]
        record.setdefault("node", socket.gethostname())  # a Ray task names its Ray node itself
        write_atomic(job.record, json.dumps(record, indent=2) + "\n")
        records[index] = record
        if on_done is not None:
            on_done(job, record)

    if executor == "ray":
        run_on_ray(jobs, workers=workers, threads=threads, address=address, finished=finished,
                   more=more)
        if any(record["status"] == "interrupted" for record in records.values()):
            raise AblationInterrupted()  # a run was stopped by a signal: rerun to resume it
    else:
        _run_local(jobs, workers, threads, finished, more)
    return [records[i] for i in sorted(records)]


def _run_local(jobs: list[Job], workers: int, threads: int,
               finished: Callable[[int, dict[str, Any]], None],
               more: Callable[[], list[Job]] | None = None) -> None:
    """J runs at a time; Ctrl-C reaches the children (same process group), which checkpoint.
    What ``more`` returns after a finished job is added to ``jobs`` and queued first (not once
    a run was interrupted: the ablation is stopping)."""
    pending = list(enumerate(jobs))
    interrupted = False
    with ThreadPoolExecutor(max_workers=workers) as pool:
        running: dict[Future[dict[str, Any]], int] = {}
        try:
            while pending or running:
                while pending and len(running) < workers and not interrupted:
                    index, job = pending.pop(0)
                    running[pool.submit(run_job, job, threads)] = index
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    record = future.result()
                    finished(running.pop(future), record)
                    interrupted = interrupted or record["status"] == "interrupted"
                    if more is not None and not interrupted:
                        queue_first(more(), jobs, pending)
        except KeyboardInterrupt:
            interrupted = True
            for future, index in running.items():  # the children got the same Ctrl-C
                finished(index, future.result())
    if interrupted:
        raise AblationInterrupted()
