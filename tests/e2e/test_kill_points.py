"""A run killed at any stage of setup or of a checkpoint write resumes to the same run, bit for bit.

Each case trains the same tiny run in a subprocess that SIGKILLs itself at one named point
(``LLMBRICKS_TEST_KILL_AT``, the store's test hook), then continues it the way the user would: the
same command again when the kill came before the run directory existed, ``--resume`` otherwise.
The result must equal an uninterrupted run: the final weights bit for bit, every event of
``metrics.jsonl`` once and in order, ``samples.txt`` the same, no temporary file left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from llmbricks.core.store.atomic import KILL_AT_ENV, is_temp_name
from tests.e2e.train_fixtures import tiny_config, train_env

TRAIN = {"max_steps": 12, "eval_every": 4, "checkpoint_every": 4, "keep_checkpoints": 2}
#: Before the run directory is renamed into place: the same command starts it again.
SETUP_POINTS = ["setup:started", "setup:tokenizer", "setup:manifest", "setup:config"]
#: After it: --resume continues it. @N is the N-th time the point is passed (checkpoints at
#: steps 4, 8 and 12; the third is the final one, after the results and before the end event).
RUN_POINTS = ["setup:renamed", "eval:sample@1", "checkpoint:files@2", "checkpoint:renamed@2",
              "checkpoint:pruned@2", "eval:sample@3", "checkpoint:state@3", "checkpoint:renamed@3",
              "checkpoint:pruned@3"]
ALL_POINTS = SETUP_POINTS + RUN_POINTS


def train(tmp: Path, *args: str, kill_at: str | None = None) -> subprocess.CompletedProcess[str]:
    env = train_env(tmp)
    env.pop(KILL_AT_ENV, None)
    if kill_at:
        env[KILL_AT_ENV] = kill_at
    return subprocess.run([sys.executable, "-m", "llmbricks", "train", "tiny.yaml", "--out", "run",
                           *args], cwd=tmp, env=env, capture_output=True, text=True, timeout=600)


def killed_and_continued(tmp: Path, point: str) -> dict[str, object]:
    """Kill the run at ``point``, continue it as the user would; what each step said."""
    tiny_config(tmp, **TRAIN)
    killed = train(tmp, kill_at=point)
    steps = {"killed": killed.returncode, "exists_after_kill": (tmp / "run").exists()}
    again = train(tmp) if point in SETUP_POINTS else train(tmp, "--resume")
    steps["continued"] = (again.returncode, again.stdout, again.stderr)
    return steps


def record(run: Path) -> dict[str, object]:
    """What the user reads of a run, without times: events in order, samples, final weights."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {
        "events": [(r["event"], r.get("step"), r.get("status"), r.get("val_loss"))
                   for r in rows if r["event"] not in ("start", "resume")],
        "samples": (run / "samples.txt").read_text(),
        "checkpoints": sorted(p.name for p in (run / "checkpoints").iterdir()),
        "weights": (run / "checkpoints" / "step-12" / "model.safetensors").read_bytes(),
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[Path, dict[str, object]]]:
    """The uninterrupted run and every killed-then-continued one (two at a time)."""
    root = tmp_path_factory.mktemp("kills")

    def one(point: str | None) -> tuple[str, tuple[Path, dict[str, object]]]:
        tmp = root / (point or "straight").replace(":", "-").replace("@", "-")
        tmp.mkdir()
        if point is None:
            tiny_config(tmp, **TRAIN)
            done = train(tmp)
            return "straight", (tmp, {"continued": (done.returncode, done.stdout, done.stderr)})
        return point, (tmp, killed_and_continued(tmp, point))

    workers = max(1, min(4, (os.cpu_count() or 1)))
    with ThreadPoolExecutor(workers) as pool:
        return dict(pool.map(one, [None, *ALL_POINTS]))


def test_the_uninterrupted_run_completes(runs):
    tmp, steps = runs["straight"]
    code, out, err = steps["continued"]
    assert code == 0, err
    assert record(tmp / "run")["checkpoints"] == ["step-12", "step-8"]


@pytest.mark.parametrize("point", ALL_POINTS)
def test_a_kill_resumes_to_the_uninterrupted_run(runs, point):
    tmp, steps = runs[point]
    assert steps["killed"] == -signal.SIGKILL, f"{point} was never reached"
    # Before the rename the run is absent, not half made, so the same command works; after it,
    # the same command says "pass --resume" (test_bad_runs checks that line) and --resume works.
    assert steps["exists_after_kill"] == (point not in SETUP_POINTS)
    code, out, err = steps["continued"]
    assert code == 0, err
    assert "Traceback" not in err
    assert record(tmp / "run") == record(runs["straight"][0] / "run")
    leftovers = [p for p in tmp.rglob("*") if is_temp_name(p.name)]
    assert leftovers == []


def test_resume_of_a_finished_run_says_so_and_changes_nothing(runs):
    tmp, _ = runs["checkpoint:pruned@3"]  # killed after its final checkpoint, before the end event
    before = record(tmp / "run")
    again = train(tmp, "--resume")
    assert again.returncode == 0, again.stderr
    assert "already finished at step 12; nothing to do" in again.stdout
    assert record(tmp / "run") == before
    events = [e[0] for e in before["events"]]
    assert events.count("end") == 1 and events.count("eval") == 3 and events.count("sample") == 3
