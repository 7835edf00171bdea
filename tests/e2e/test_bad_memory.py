"""Battery: configs whose training cannot fit in memory are refused before anything is allocated.

`train` refuses them in one line giving the estimate and the memory available (exit 2, nothing
written); `model summary` prints the same estimate and says it does not fit; the ablation dry run
marks such variants and refuses the plan; LLMBRICKS_SKIP_MEMORY_CHECK=1 lets a run through.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmbricks.core.train import memory
from tests.e2e.bad_inputs import assert_clean_failure, invoke, snapshot
from tests.e2e.train_fixtures import tiny_config, train_env

SKIP = memory.SKIP_ENV
#: Sizes no machine has: each of these alone needs far more than a terabyte to train.
TOO_BIG = {
    "batch": ["--set", "train.batch_size=10000000"],
    "context": ["--set", "model.context_length=1000000", "--set", "model.attention=mha"],
    "width": ["--set", "model.emb_dim=131072", "--set", "model.n_layers=100",
              "--set", "model.n_heads=64"],
    "vocab": ["--set", "model.vocab_size=16000000", "--set", "model.emb_dim=65536",
              "--set", "model.n_heads=64"],
}


#: `model summary` counts the model as configured: it needs a vocabulary size (the tiny config's
#: char tokenizer learns its own from the corpus).
VOCAB = ("--set", "model.vocab_size=40")


def env(tmp_path: Path, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in train_env(tmp_path).items() if k != SKIP}
    return {**base, "COLUMNS": "200", **extra}


@pytest.fixture(autouse=True)
def _check_on(monkeypatch):
    monkeypatch.delenv(SKIP, raising=False)


@pytest.mark.parametrize("case", list(TOO_BIG), ids=[f"train-too-big-{c}" for c in TOO_BIG])
def test_train_refuses_a_config_that_cannot_fit_and_writes_nothing(tmp_path, case):
    config = tiny_config(tmp_path)
    before = snapshot(tmp_path)
    result = invoke("train", str(config), *TOO_BIG[case], env=env(tmp_path), cwd=tmp_path)
    line = assert_clean_failure(result, 2, "needs about", "GiB", "available", "train.batch_size",
                                SKIP)
    assert "weights" in line and "activations" in line
    assert snapshot(tmp_path) == before  # no run directory, no token cache


def test_train_refuses_when_the_machine_has_less_than_the_estimate(tmp_path, monkeypatch):
    """A small config on a (patched) machine with 64 MiB left: the refusal gives both numbers."""
    config = tiny_config(tmp_path)
    monkeypatch.setattr(memory, "available_memory", lambda device: 64 << 20)
    before = snapshot(tmp_path)
    result = invoke("train", str(config), env=env(tmp_path), cwd=tmp_path)
    line = assert_clean_failure(result, 2, "needs about", "but the machine has 0.06 GiB available")
    assert "process" in line
    assert snapshot(tmp_path) == before


def test_the_skip_variable_lets_the_run_past_the_check(tmp_path, monkeypatch):
    """With LLMBRICKS_SKIP_MEMORY_CHECK=1 the same run trains (its machine really has room)."""
    config = tiny_config(tmp_path, max_steps=2, eval_every=2, checkpoint_every=2,
                         sample_prompt=None)
    monkeypatch.setattr(memory, "available_memory", lambda device: 64 << 20)
    result = invoke("train", str(config), "--out", "run", env=env(tmp_path, **{SKIP: "1"}),
                    cwd=tmp_path)
    assert result.code == 0, result.stderr
    assert (tmp_path / "run" / "checkpoints").is_dir()


def test_the_skip_variable_passes_a_huge_config_on_to_the_next_check(tmp_path):
    """Skipped, a context of a million tokens meets the next stage's own check (the corpus is
    too short for one window), in one line of its own."""
    config = tiny_config(tmp_path)
    result = invoke("train", str(config), "--set", "model.context_length=1000000",
                    "--set", "train.batch_size=4", env=env(tmp_path, **{SKIP: "1"}), cwd=tmp_path)
    line = assert_clean_failure(result, 2, "one window needs 1000001")
    assert "needs about" not in line
    without = invoke("train", str(config), "--set", "model.context_length=1000000",
                     "--set", "model.attention=mha", "--set", "train.batch_size=4",
                     env=env(tmp_path), cwd=tmp_path)
    assert_clean_failure(without, 2, "needs about")  # the memory check comes first


@pytest.mark.parametrize("case", ["batch", "vocab"], ids=["summary-batch", "summary-vocab"])
def test_model_summary_prints_the_estimate_and_does_not_refuse(tmp_path, case):
    config = tiny_config(tmp_path)
    result = invoke("model", "summary", str(config), *VOCAB, *TOO_BIG[case], env=env(tmp_path),
                    cwd=tmp_path)
    assert result.code == 0, result.stderr
    assert "training memory:" in result.stdout and "GiB" in result.stdout
    assert "does NOT fit" in result.stdout and SKIP in result.stdout


def test_model_summary_json_says_whether_it_fits(tmp_path):
    config = tiny_config(tmp_path)
    small = invoke("model", "summary", str(config), *VOCAB, "--json", env=env(tmp_path), cwd=tmp_path)
    big = invoke("model", "summary", str(config), *VOCAB, "--json", *TOO_BIG["batch"], env=env(tmp_path),
                 cwd=tmp_path)
    assert small.code == big.code == 0, small.stderr + big.stderr
    fits = json.loads(small.stdout)["training_memory"]
    too_big = json.loads(big.stdout)["training_memory"]
    assert fits["fits"] is True and too_big["fits"] is False
    assert too_big["total_bytes"] == sum(too_big["parts_bytes"].values())
    assert too_big["total_bytes"] > too_big["available_bytes"]


def test_model_summary_of_a_config_that_cannot_train_says_why(tmp_path):
    """trainable: none with no adapters cannot train: the summary still prints its counts."""
    config = tiny_config(tmp_path)
    result = invoke("model", "summary", str(config), *VOCAB, "--set", "train.trainable=none",
                    env=env(tmp_path), cwd=tmp_path)
    assert result.code == 0, result.stderr
    assert "training memory:        not estimated (train.trainable: none" in result.stdout


def test_the_ablation_dry_run_flags_the_variant_that_would_not_fit(tmp_path):
    config = tiny_config(tmp_path)
    before = snapshot(tmp_path / "abl", config)  # (its tokenizer is cached, as a dry run does)
    result = invoke("ablate", str(config), "--grid", "train.batch_size=4,10000000", "--out", "abl",
                    "--dry-run", env=env(tmp_path), cwd=tmp_path)
    line = assert_clean_failure(result, 2, "1 variant would not fit", "batch_size=10000000", SKIP)
    assert "batch_size=4" not in line.split("(")[1].split(":")[0]
    rows = {row.split()[1]: row for row in result.stdout.splitlines() if "batch_size=" in row}
    assert "!" in rows["batch_size=10000000"] and "!" not in rows["batch_size=4"]
    assert "1 of 2 variants fit" in result.stdout
    assert snapshot(tmp_path / "abl", config) == before  # no ablation directory, nothing trained


def test_the_ablation_dry_run_shares_memory_among_its_jobs(tmp_path, monkeypatch):
    """Runs at a time share the machine: variants that fit one at a time may not fit eight."""
    import llmbricks.core.ablation.estimate as ablation_estimate
    from llmbricks.core.config import load_config

    config = tiny_config(tmp_path)
    biggest = memory.estimate_memory(load_config(config, ["train.batch_size=4"]))
    monkeypatch.setattr(ablation_estimate, "available_memory", lambda device: 3 * biggest.total)
    one = invoke("ablate", str(config), "--grid", "train.batch_size=2,4", "--dry-run",
                 env=env(tmp_path), cwd=tmp_path)
    assert one.code == 0, one.stderr
    many = invoke("ablate", str(config), "--grid", "train.batch_size=2,4", "--jobs", "8",
                  "--dry-run", env=env(tmp_path), cwd=tmp_path)
    assert_clean_failure(many, 2, "2 variants would not fit", "8 at a time", "fewer --jobs")


def test_the_ablation_dry_run_with_the_check_off_notes_and_passes(tmp_path):
    config = tiny_config(tmp_path)
    result = invoke("ablate", str(config), "--grid", "train.batch_size=4,10000000", "--dry-run",
                    env=env(tmp_path, **{SKIP: "1"}), cwd=tmp_path)
    assert result.code == 0, result.stderr
    assert "would not fit" in result.stderr and f"{SKIP} is set" in result.stderr
