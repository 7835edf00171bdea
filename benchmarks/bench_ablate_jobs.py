"""Ablation throughput: the same small grid with ``--jobs 1`` and ``--jobs 2``, in one process.

    .venv/bin/python benchmarks/bench_ablate_jobs.py [--steps 300] [--seeds 2]

The grid is the quickstart's baby GPT (4 layers, 128 dims, context 64, char level, tiny
shakespeare) with two norms over ``--seeds`` seeds. Each setting trains the whole grid into a
fresh directory with ``llmbricks ablate``; throughput is runs per minute of wall time (process
start, data, evaluations and the report included). ``--jobs 2`` gives each run one torch thread
(``cores // jobs``), ``--jobs 1`` gives it both.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:
    from benchmarks.common import machine, table
except ImportError:  # run as a script from the repository root
    from common import machine, table

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "examples" / "configs" / "quickstart.yaml"


def ablate(out: Path, jobs: int, steps: int, seeds: int) -> float:
    """Wall seconds of one whole ablation."""
    argv = [sys.executable, "-m", "llmbricks", "ablate", str(CONFIG),
            "--grid", "model.norm=layernorm,rmsnorm", "--seeds", str(seeds), "--jobs", str(jobs),
            "--out", str(out), "--set", f"train.max_steps={steps}",
            "--set", f"train.eval_every={steps}", "--set", "train.sample_prompt=null",
            "--set", "train.loggers=[jsonl]"]
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, text=True, env=os.environ.copy())
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()
    runs = 2 * args.seeds
    rows, seconds = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for jobs in (1, 2):
            seconds[jobs] = ablate(Path(tmp) / f"jobs{jobs}", jobs, args.steps, args.seeds)
            rows.append([jobs, max(1, (os.cpu_count() or 1) // jobs), runs,
                         f"{seconds[jobs]:.1f}", f"{runs / seconds[jobs] * 60:.2f}"])
    print(f"machine: {machine()}")
    print(f"grid: quickstart x model.norm=layernorm,rmsnorm x {args.seeds} seeds, "
          f"{args.steps} steps per run")
    print(table(["jobs", "threads/run", "runs", "wall s", "runs/min"], rows))
    print(f"throughput jobs 2 / jobs 1: {seconds[1] / seconds[2]:.2f}x")


if __name__ == "__main__":
    main()
