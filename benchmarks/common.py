"""Shared helpers for the benchmarks: timing, machine description, Markdown tables."""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable, Sequence

import torch


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    return (f"{cpu}, {os.cpu_count()} CPUs, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), Python {sys.version.split()[0]}")


def best_of(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Best wall time of ``repeats`` calls after ``warmup`` calls (seconds)."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
