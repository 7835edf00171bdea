"""Ablation throughput: the same small grid with ``--jobs 1`` and ``--jobs 2``, in one process.

    .venv/bin/python benchmarks/bench_ablate_jobs.py [--steps 300] [--seeds 2]

The grid is the quickstart's baby GPT (4 layers, 128 dims, context 64, char level, tiny
shakespeare) with two norms over ``--seeds`` seeds. Each setting trains the whole grid into a
fresh directory with ``llmbricks ablate``; throughput is runs per minute of wall time (process
start, data, evaluations and the report included). ``--jobs 2`` gives each run one torch thread
(``cores // jobs``), ``--jobs 1`` gives it both. Last, the same run with one thread is timed
alone and two at once: the most that two processes can gain on this machine.
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


def lone_and_paired(tmp: Path, steps: int) -> tuple[float, float]:
    """Wall seconds of one single-thread run alone, and of two started together.

    The machine's own parallel efficiency, whatever llmbricks does: two processes on two cores
    reach 2x only if they do not share the cores' caches, memory bandwidth or host.
    """
    def start(out: Path) -> subprocess.Popen:
        argv = [sys.executable, "-m", "llmbricks", "train", str(CONFIG), "--out", str(out),
                "--set", f"train.max_steps={steps}", "--set", f"train.eval_every={steps}",
                "--set", "train.sample_prompt=null", "--set", "train.loggers=[jsonl]"]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)

    begin = time.perf_counter()
    start(tmp / "alone").wait()
    alone = time.perf_counter() - begin
    begin = time.perf_counter()
    for process in [start(tmp / "pair-a"), start(tmp / "pair-b")]:
        process.wait()
    return alone, time.perf_counter() - begin


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
    with tempfile.TemporaryDirectory() as tmp:
        alone, paired = lone_and_paired(Path(tmp), args.steps)
    print(f"the machine: one 1-thread run alone {alone:.1f} s, two at once {paired:.1f} s: "
          f"{2 * alone / paired:.2f}x the throughput of one")


if __name__ == "__main__":
    main()
