"""`llmbricks ablate`: dry run, a real grid over seeds, failures, kill and rerun, report, Ray."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.e2e.train_fixtures import tiny_config, train_env, wait_for

FAST = {"max_steps": 6, "eval_every": 3, "checkpoint_every": 3, "grad_accum": 1,
        "sample_prompt": None}


def ablate(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "llmbricks", "ablate", *args], cwd=tmp_path,
                          env={**train_env(tmp_path), "COLUMNS": "200"}, capture_output=True,
                          text=True, timeout=600)


def records(abl: Path) -> dict[str, dict]:
    return {f"{p.parent.name}/{p.stem}": json.loads(p.read_text())
            for p in sorted((abl / "runs").glob("*/seed-*.json"))}


def test_dry_run_validates_every_variant_prints_the_plan_and_trains_nothing(tmp_path):
    config = tiny_config(tmp_path, **FAST)
    result = ablate(str(config), "--grid", "model.positional=absolute,rope", "--seeds", "2",
                    "--out", "abl", "--dry-run", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "2 variants x 2 seeds" in out and "positional=absolute *" in out
    assert "positional=rope" in out and "estimated training time" in out
    assert not (tmp_path / "abl").exists()
    bad = ablate(str(config), "--grid", "model.n_heads=2,3", "--dry-run", tmp_path=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.strip() == ("error: variant n_heads=3: model.emb_dim: 32 is not divisible "
                                  "by model.n_heads=3; use a multiple of n_heads (e.g. 30 or 33)")


@pytest.mark.slow
def test_a_grid_over_seeds_runs_in_parallel_and_writes_the_report(tmp_path):
    config = tiny_config(tmp_path, **FAST)
    result = ablate(str(config), "--grid", "model.norm=layernorm,rmsnorm", "--seeds", "2",
                    "--jobs", "2", "--out", "abl", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    abl = tmp_path / "abl"
    assert set(records(abl)) == {"norm=layernorm/seed-0", "norm=layernorm/seed-1",
                                 "norm=rmsnorm/seed-0", "norm=rmsnorm/seed-1"}
    assert all(r["status"] == "completed" for r in records(abl).values())
    # Each run is a normal run directory, trained with its own seed.
    for variant, norm in (("norm=layernorm", "layernorm"), ("norm=rmsnorm", "rmsnorm")):
        for k, seed in enumerate((7, 8)):
            run_config = yaml.safe_load((abl / "runs" / variant / f"seed-{k}" / "config.yaml")
                                        .read_text())
            assert run_config["seed"] == seed and run_config["model"]["norm"]["name"] == norm
            assert "ablation" not in run_config
    plan = json.loads((abl / "plan.json").read_text())
    assert plan["grid"] == {"model.norm": ["layernorm", "rmsnorm"]} and plan["seeds"] == [7, 8]
    with open(abl / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4 and {r["status"] for r in rows} == {"completed"}
    for name in ("summary.csv", "results.json", "report.md", "curves.png", "final.png"):
        assert (abl / name).is_file(), name
    assert "[4/4]" in result.stdout and "norm=rmsnorm" in result.stdout
    again = ablate(str(config), "--grid", "model.norm=layernorm,rmsnorm", "--seeds", "2",
                   "--out", "abl", tmp_path=tmp_path)
    assert again.returncode == 0 and "0 to train, 4 already done" in again.stdout


@pytest.mark.slow
def test_a_failing_variant_is_recorded_and_the_others_still_run(tmp_path):
    config = tiny_config(tmp_path, **FAST)
    result = ablate(str(config), "--grid", "train.batch_size=4,100000", "--out", "abl",
                    tmp_path=tmp_path)
    assert result.returncode == 1
    found = records(tmp_path / "abl")
    assert found["batch_size=4/seed-0"]["status"] == "completed"
    failed = found["batch_size=100000/seed-0"]
    assert failed["status"] == "failed" and failed["error"].startswith("error: ")
    assert "1 of 2 runs did not complete" in result.stderr
    assert "failed" in (tmp_path / "abl" / "report.md").read_text()


@pytest.mark.slow
def test_a_killed_ablation_reruns_only_what_is_missing_and_resumes_the_interrupted_run(tmp_path):
    config = tiny_config(tmp_path, max_steps=60, eval_every=5, checkpoint_every=5,
                         grad_accum=1, sample_prompt=None)
    args = [str(config), "--grid", "model.norm=layernorm,rmsnorm", "--out", "abl"]
    process = subprocess.Popen([sys.executable, "-m", "llmbricks", "ablate", *args],
                               cwd=tmp_path, env=train_env(tmp_path), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    abl = tmp_path / "abl"
    first = abl / "runs" / "norm=layernorm" / "seed-0.json"
    second = abl / "runs" / "norm=rmsnorm" / "seed-0" / "checkpoints"
    wait_for(lambda: first.is_file() and second.is_dir() and any(second.glob("step-*")), process,
             timeout=300)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    assert json.loads(first.read_text())["status"] == "completed"
    assert not (abl / "runs" / "norm=rmsnorm" / "seed-0.json").exists()
    done_before = first.read_text()
    rerun = ablate(*args, tmp_path=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert "1 to train, 1 already done" in rerun.stdout
    assert first.read_text() == done_before  # the finished run was not trained again
    events = [json.loads(line) for line in
              (abl / "runs" / "norm=rmsnorm" / "seed-0" / "metrics.jsonl").read_text().splitlines()]
    assert any(e["event"] == "resume" for e in events)
    assert events[-1]["event"] == "end" and events[-1]["status"] == "completed"
    assert events[-1]["step"] == 60


def test_report_rebuilds_from_the_directory_alone(tmp_path):
    missing = ablate("report", str(tmp_path), tmp_path=tmp_path)
    assert missing.returncode == 2 and "is not an ablation directory" in missing.stderr


@pytest.mark.slow
def test_the_ray_executor_runs_two_tiny_runs_on_a_local_instance(tmp_path):
    pytest.importorskip("ray", reason="the ray extra is part of the dev install")
    config = tiny_config(tmp_path, **FAST)
    result = ablate(str(config), "--grid", "model.norm=layernorm,rmsnorm", "--executor", "ray",
                    "--jobs", "2", "--out", "abl", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr + result.stdout
    found = records(tmp_path / "abl")
    assert len(found) == 2 and all(r["status"] == "completed" for r in found.values())
    assert (tmp_path / "abl" / "report.md").is_file()


@pytest.mark.slow
def test_a_real_ablation_pairs_seeds_adjusts_p_values_and_draws_a_forest(tmp_path):
    """3 variants x 3 seeds: the same config under a second name pairs exactly ([0, 0], the
    seed moves both runs alike) while Welch's interval, blind to the pairing, spans the seeds."""
    config = tiny_config(tmp_path, **FAST)
    raw = yaml.safe_load(config.read_text())
    raw["ablation"] = {"variants": {"base": {}, "renamed": {}, "rope": {"model.positional": "rope"}},
                       "seeds": 3, "baseline": "base"}
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    result = ablate(str(config), "--jobs", "2", "--out", "abl", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    abl = tmp_path / "abl"
    with open(abl / "summary.csv", newline="") as handle:
        summary = {r["variant"]: r for r in csv.DictReader(handle)}
    renamed, rope = summary["renamed"], summary["rope"]
    assert renamed["test"] == "paired t" and renamed["n_pairs"] == "3"
    assert float(renamed["ci_paired_low"]) == float(renamed["ci_paired_high"]) == 0.0
    assert float(renamed["ci_low"]) < 0 < float(renamed["ci_high"])  # Welch: the seeds' spread
    assert rope["test"] == "paired t" and rope["p"] and rope["p_holm"]
    assert float(rope["p_holm"]) >= float(rope["p"])
    assert (abl / "forest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (abl / "report.md").read_text()
    assert "](forest.png)" in report and "- renamed cannot be told apart from base (+0.0000" in report
