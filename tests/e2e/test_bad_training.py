"""The battery, training going wrong: a NaN or inf stops the run (or skips, by policy) in one line.

A huge ``train.lr`` makes it happen deterministically on the tiny config: at ``lr=1e30`` the first
AdamW update moves every weight by about 1e30 (still finite in fp32), so step 2's loss is NaN; at
``lr=1e300`` the update itself overflows, so the weights are infinite after step 1 while its loss
and gradient were finite.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from llmbricks.core.store.runs import verify_checkpoint
from tests.e2e.bad_inputs import Result, assert_clean_failure, invoke, snapshot
from tests.e2e.train_fixtures import events, tiny_config

#: Fast: 6 steps, no samples, a step logged and a checkpoint written at each step.
FAST = ["--set", "train.max_steps=6", "--set", "train.sample_prompt=null",
        "--set", "train.checkpoint_every=1", "--set", "train.keep_checkpoints=10",
        "--set", "train.eval_every=100", "--set", "train.warmup_steps=0",
        "--set", "train.schedule=constant"]


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    config = tiny_config(tmp_path)
    return config, {"LLMBRICKS_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}


def train(config: Path, env: dict[str, str], *sets: str) -> tuple[Result, Path]:
    run = config.parent / "run"
    args = [a for s in sets for a in ("--set", s)]
    return invoke("train", str(config), *FAST, *args, "--out", str(run), env=env), run


def checkpoint_steps(run: Path) -> list[int]:
    folder = run / "checkpoints"
    names = [p.name for p in folder.iterdir()] if folder.is_dir() else []
    return sorted(int(n.removeprefix("step-")) for n in names if n.startswith("step-"))


def assert_checkpoints_finite(run: Path) -> None:
    from safetensors.torch import load_file

    for step in checkpoint_steps(run):
        found = verify_checkpoint(run / "checkpoints" / f"step-{step}")
        weights = load_file(found.path / "model.safetensors")
        assert all(bool(torch.isfinite(t).all()) for t in weights.values()), step


def without_warnings(result: Result) -> tuple[Result, list[str]]:
    """The result with its ``warning:`` lines (skipped steps) taken out of stderr, and those lines."""
    lines = result.stderr.strip().splitlines()
    kept = [line for line in lines if not line.startswith("warning:")]
    return Result(result.code, result.stdout, "\n".join(kept)), [line for line in lines if line not in kept]


# (id, --set values, words the one line names, the checkpoints left)
STOPS = [
    ("loss-nan-after-a-good-checkpoint", ["train.lr=1e30"],
     ["step 2: the loss is nan", "lr 1e+30 may be too high; lower train.lr",
      "the last good checkpoint is step 1 in"], [1]),
    ("no-checkpoint-yet", ["train.lr=1e30", "train.checkpoint_every=4"],
     ["step 2: the loss is nan", "no checkpoint was written before it"], []),
    ("bf16-named-as-a-cause", ["train.lr=1e30", "train.precision=bf16"],
     ["step 2:", "or bf16 overflowed", "set train.precision=fp32", "last good checkpoint is step 1"],
     [1]),
    ("no-clipping-suggests-it", ["train.lr=1e30", "train.grad_clip=null"],
     ["step 2: the loss is nan", "or set train.grad_clip"], [1]),
    ("weights-overflow-never-saved", ["train.lr=1e300"],
     ["step 1: the weights are not finite after the optimizer step and were not saved",
      "lr 1e+300 may be too high", "no checkpoint was written before it"], []),
    ("skip-gives-up-after-ten-in-a-row", ["train.lr=1e30", "train.on_nonfinite=skip",
                                          "train.max_steps=20"],
     ["step 11: the loss is nan: 10 non-finite steps in a row, the most train.on_nonfinite=skip "
      "allows", "the last good checkpoint is step 10 in"], list(range(1, 11))),
]


@pytest.mark.parametrize(("sets", "words", "kept"), [case[1:] for case in STOPS],
                         ids=[case[0] for case in STOPS])
def test_a_non_finite_run_stops_in_one_line_and_keeps_only_finite_checkpoints(setup, sets, words,
                                                                             kept):
    config, env = setup
    before = snapshot(config, config.parent / "corpus.txt")
    result, run = train(config, env, *sets)
    result, warned = without_warnings(result)
    assert_clean_failure(result, 1, *words)
    assert len(warned) == ("train.on_nonfinite=skip" in sets)  # one warning per streak of skips
    assert checkpoint_steps(run) == kept
    assert_checkpoints_finite(run)
    assert not list(run.glob("checkpoints/.*")), "a temporary checkpoint was left"
    assert snapshot(config, config.parent / "corpus.txt") == before
    if run.is_dir():  # a run that logged a step is kept: its metrics say what happened
        log = events(run)
        assert log[-1]["event"] == "end" and log[-1]["status"] == "failed"


def test_the_nonfinite_event_is_in_the_metrics(setup):
    config, env = setup
    _, run = train(config, env, "train.lr=1e30")
    [event] = [e for e in events(run) if e["event"] == "nonfinite"]
    assert event["step"] == 2 and event["action"] == "stop" and event["loss"] is None  # NaN -> null


def test_resuming_a_stopped_run_continues_from_the_last_good_checkpoint(setup):
    config, env = setup
    first, run = train(config, env, "train.lr=1e30")
    line = assert_clean_failure(first, 1, "step 2")
    again = invoke("train", str(config), *FAST, "--set", "train.lr=1e30", "--out", str(run),
                   "--resume", env=env)
    # The same config is the same run: it resumes at step 1 and meets the same NaN at step 2.
    assert assert_clean_failure(again, 1) == line
    assert [e["step"] for e in events(run) if e["event"] == "resume"] == [1]
    assert checkpoint_steps(run) == [1]


def test_resuming_with_a_lower_lr_continues_from_the_last_good_checkpoint(setup):
    config, env = setup
    good, run = train(config, env, "train.max_steps=3")
    assert good.code == 0, good.stderr
    # At lr=1e300 step 4's update overflows: its weights are infinite, so no step-4 checkpoint.
    bad = invoke("train", str(config), *FAST, "--set", "train.lr=1e300", "--out", str(run), "--resume",
                 env=env)
    assert_clean_failure(bad, 1, "step 4", "the last good checkpoint is step 3")
    fixed = invoke("train", str(config), *FAST, "--set", "train.lr=1e-3", "--set", "train.grad_clip=1.0",
                   "--out", str(run), "--resume", env=env)
    assert fixed.code == 0, fixed.stderr
    assert [e["step"] for e in events(run) if e["event"] == "resume"] == [3]
    assert checkpoint_steps(run) == [1, 2, 3, 4, 5, 6]
    assert_checkpoints_finite(run)


def test_skip_below_the_limit_finishes_with_finite_checkpoints(setup):
    config, env = setup
    result, run = train(config, env, "train.lr=1e30", "train.on_nonfinite=skip")
    assert result.code == 0, result.stderr
    assert result.stderr.strip().splitlines() == [
        "warning: step 2: the loss is nan; skipped this update (train.on_nonfinite=skip; training "
        "stops after 10 in a row)"]
    skipped = [e["step"] for e in events(run) if e["event"] == "nonfinite"]
    assert skipped == [2, 3, 4, 5, 6]
    assert checkpoint_steps(run) == [1, 2, 3, 4, 5, 6]
    assert_checkpoints_finite(run)


def test_an_unknown_policy_is_a_config_error(setup):
    config, env = setup
    before = snapshot(config.parent)
    result, run = train(config, env, "train.on_nonfinite=ignore")
    assert_clean_failure(result, 2, "on_nonfinite")
    assert not run.exists() and snapshot(config.parent) == before
