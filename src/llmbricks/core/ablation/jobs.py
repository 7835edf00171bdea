"""One run of an ablation: the job that names it, and the child process that trains it.

Shared by both executors (``execute`` runs jobs on local threads, ``ray_executor`` as Ray tasks),
so neither imports the other.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import LlmbricksError


@dataclass(frozen=True)
class Job:
    """One run of the plan, and the command that trains (or resumes) it."""

    variant: str
    seed_index: int
    seed: int
    run_dir: Path
    record: Path
    argv: list[str]

    @property
    def config(self) -> Path:
        """The variant's config file: the argument after ``train`` in ``argv``."""
        return Path(self.argv[self.argv.index("train") + 1])

    def to_data(self) -> dict[str, Any]:
        return {"variant": self.variant, "seed_index": self.seed_index, "seed": self.seed}


def queue_first(new: list[Job], jobs: list[Job], pending: list[tuple[int, Job]]) -> None:
    """Add ``new`` to ``jobs`` and put them at the head of ``pending`` (index, job) pairs:
    both executors queue what ``execute``'s ``more`` returns this way."""
    pending[:0] = [(len(jobs) + i, job) for i, job in enumerate(new)]
    jobs.extend(new)


def run_job(job: Job, threads: int) -> dict[str, Any]:
    """Train one run in a child process; return its record (never raises for a failed run)."""
    job.run_dir.parent.mkdir(parents=True, exist_ok=True)
    log = job.run_dir.with_suffix(".log")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "PYTHONUNBUFFERED": "1"}
    started = time.perf_counter()
    with open(log, "a", encoding="utf-8") as out:
        out.write(f"$ {shlex.join(job.argv)}\n")
        out.flush()
        process = subprocess.Popen(job.argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                                   preexec_fn=_die_with_parent)
        code = process.wait()
    status = "completed" if code == 0 else "interrupted" if code in (130, -signal.SIGINT) else "failed"
    return {**job.to_data(), "status": status, "error": _last_error(log) if status == "failed" else None,
            "wall_s": round(time.perf_counter() - started, 3), "returncode": code,
            "log": str(log.name)}


def _die_with_parent() -> None:
    """Linux: the child gets SIGKILL when the ablation process dies (no orphan keeps writing)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _last_error(log: Path) -> str:
    """The child's last ``error:`` line (the CLI prints exactly one), else its last line."""
    lines = [line.strip() for line in log.read_text(encoding="utf-8", errors="replace").splitlines()
             if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    return (errors or lines or ["(no output)"])[-1][:500]


class AblationInterrupted(LlmbricksError):
    """Ctrl-C: the running runs checkpointed; the same command resumes the ablation."""

    exit_code = 130

    def __init__(self) -> None:
        super().__init__("ablation interrupted; run the same command again to resume it")
