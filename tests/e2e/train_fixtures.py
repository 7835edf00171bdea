"""A tiny character-level training config that finishes in seconds, for the training tests."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.conftest import ROOT

WORDS = ("the king and queen of a far land rode out at dawn to see the sea while birds sang "
         "over hills of green and gold").split()


def corpus(path: Path, chars: int = 4000) -> Path:
    rng = random.Random(0)
    words = []
    while sum(len(w) + 1 for w in words) < chars:
        words.append(rng.choice(WORDS))
    path.write_text(" ".join(words) + "\n", encoding="utf-8")
    return path


def tiny_config(tmp_path: Path, **train: object) -> Path:
    """Write the tiny config (2 layers, 32 dims, context 16) and its corpus; return the config path."""
    text = corpus(tmp_path / "corpus.txt")
    data = {
        "name": "tiny",
        "model": {"tokenizer": "char", "context_length": 16, "emb_dim": 32, "n_layers": 2,
                  "n_heads": 2, "dropout": 0.1},
        "data": {"source": {"name": "text", "path": str(text)}, "val_fraction": 0.1},
        "train": {"max_steps": 40, "batch_size": 4, "grad_accum": 2, "lr": 3e-3,
                  "warmup_steps": 5, "eval_every": 5, "eval_batches": 2, "log_every": 1,
                  "checkpoint_every": 5, "keep_checkpoints": 3, "sample_prompt": "the ",
                  "sample_tokens": 8, "loggers": ["jsonl"], **train},
        "seed": 7,
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def train_env(tmp_path: Path) -> dict[str, str]:
    """One thread: results are bitwise reproducible from process to process."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "LLMBRICKS_CACHE_DIR": str(tmp_path / "cache"),
            "PYTHONWARNINGS": "ignore"}


def start_training(*args: str, tmp_path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "llmbricks", "train", *args], cwd=tmp_path,
                            env=train_env(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def train(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "llmbricks", "train", *args], cwd=tmp_path,
                          env=train_env(tmp_path), capture_output=True, text=True, timeout=600)


def wait_for(predicate, process: subprocess.Popen[str], timeout: float = 120.0) -> None:
    """Poll until ``predicate()``; fail if the process ends first."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if process.poll() is not None:
            out, err = process.communicate()
            raise AssertionError(f"training ended (code {process.returncode}) before the "
                                 f"moment to interrupt it:\n{out}\n{err}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("timed out waiting for the training subprocess")
        time.sleep(0.005)


def steps_logged(metrics: Path) -> int:
    if not metrics.is_file():
        return 0
    lines = metrics.read_text(encoding="utf-8").splitlines()
    return sum(1 for line in lines if line.startswith('{"event": "step"'))


def kill(process: subprocess.Popen[str], sig: signal.Signals) -> None:
    process.send_signal(sig)
    process.communicate(timeout=120)


def events(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


__all__ = ["ROOT", "corpus", "events", "kill", "start_training", "steps_logged", "tiny_config",
           "train", "train_env", "wait_for"]
