"""`llmbricks train --pause-at`: a run stopped at a step and resumed is the run that never paused
(successive halving trains its rungs this way)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.e2e.train_fixtures import tiny_config, train_env


def train(*args: str, tmp_path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "llmbricks", "train", *args], cwd=tmp_path,
                          env=train_env(tmp_path), capture_output=True, text=True, timeout=300)


def evals(run) -> dict[int, float]:
    events = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {e["step"]: e["val_loss"] for e in events if e["event"] == "eval"}


@pytest.mark.slow
def test_a_paused_and_resumed_run_equals_the_run_that_never_paused(tmp_path):
    config = str(tiny_config(tmp_path, max_steps=12, eval_every=5, checkpoint_every=5,
                             sample_prompt=None))
    paused = train(config, "--out", "a", "--pause-at", "7", tmp_path=tmp_path)
    assert paused.returncode == 0, paused.stderr
    assert paused.stdout.startswith("paused at step 7, val loss ")
    assert "--resume continues it" in paused.stdout
    assert sorted(p.name for p in (tmp_path / "a" / "checkpoints").iterdir()) == ["step-5", "step-7"]
    assert list(evals(tmp_path / "a")) == [5, 7]       # evaluated where it paused
    resumed = train(config, "--out", "a", "--resume", tmp_path=tmp_path)
    assert resumed.returncode == 0, resumed.stderr and "done: 12 steps" in resumed.stdout
    straight = train(config, "--out", "b", tmp_path=tmp_path)
    assert straight.returncode == 0, straight.stderr
    a, b = evals(tmp_path / "a"), evals(tmp_path / "b")
    # The schedule counted all 12 steps while paused: the same losses, to the bit.
    assert {s: a[s] for s in (5, 10, 12)} == b
