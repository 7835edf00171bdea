"""`llmbricks ablate --halving`: 4 variants, the worse 2 stop at the first rung and are reported
as pruned there; the same command resumes and retrains nothing that is done. `--asha`: the same
without waiting for the rung, its promotions recorded in halving.json."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from tests.e2e.test_ablate import FAST, ablate, records
from tests.e2e.train_fixtures import tiny_config

GRID = "train.lr=0.003,0.000001,0.0000001,0.01"


@pytest.mark.slow
def test_halving_on_4_variants_prunes_2_and_reports_them_as_pruned(tmp_path):
    config = tiny_config(tmp_path, **{**FAST, "max_steps": 4, "eval_every": 2,
                                      "checkpoint_every": 2, "warmup_steps": 0})
    result = ablate(str(config), "--grid", GRID, "--halving", "--jobs", "2", "--out", "abl",
                    tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    abl = tmp_path / "abl"
    assert "successive halving over 2 rungs" in result.stdout
    assert result.stdout.count("paused at rung 1") == 4        # every variant trains to step 2
    assert result.stdout.count(" completed in ") == 2          # then only 2 go on to step 4
    plan = json.loads((abl / "plan.json").read_text())
    assert plan["halving"] == {"rungs": 2, "steps": {v: [2, 4] for v in (
        "lr=0.003", "lr=1e-06", "lr=1e-07", "lr=0.01")}}
    with open(abl / "results.csv", newline="") as handle:
        runs = {row["variant"]: row for row in csv.DictReader(handle)}
    pruned = {v for v, row in runs.items() if row["status"] == "pruned"}
    assert pruned == {"lr=1e-06", "lr=1e-07"}                 # the tiny learning rates
    assert {runs[v]["steps"] for v in pruned} == {"2"}
    assert {runs[v]["status"] for v in ("lr=0.003", "lr=0.01")} == {"completed"}
    with open(abl / "summary.csv", newline="") as handle:
        summary = {row["variant"]: row for row in csv.DictReader(handle)}
    assert {v for v, s in summary.items() if s["pruned"] == "True"} == pruned
    assert {summary[v]["rung"] for v in pruned} == {"0"}
    assert summary["lr=0.01"]["rung"] == "1" and summary["lr=0.01"]["pruned"] == "False"
    report = (abl / "report.md").read_text()
    assert "successive halving: 2 rungs" in report and "1 (pruned)" in report
    assert "where it was pruned" in report
    decided = json.loads((abl / "halving.json").read_text())["decided"]
    assert decided[0]["pruned"] and set(decided[0]["pruned"]) == pruned
    assert (abl / "forest.png").is_file() and (abl / "curves.png").is_file()

    # Done: the same command trains nothing.
    again = ablate(str(config), "--grid", GRID, "--halving", "--out", "abl", tmp_path=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "[1]" not in again.stdout
    # A survivor killed during its last rung (after its step-2 checkpoint): only it trains again.
    record = abl / "runs" / "lr=0.01" / "seed-0.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "status": "interrupted"}))
    shutil.rmtree(abl / "runs" / "lr=0.01" / "seed-0" / "checkpoints" / "step-4")
    resumed = ablate(str(config), "--grid", GRID, "--halving", "--out", "abl", tmp_path=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "[1] lr=0.01 seed-0 completed" in resumed.stdout, resumed.stdout
    assert "[2]" not in resumed.stdout
    assert records(abl)["lr=0.01/seed-0"]["status"] == "completed"


@pytest.mark.slow
def test_asha_promotes_as_runs_finish_records_it_and_reports_the_rest_as_pruned(tmp_path):
    config = tiny_config(tmp_path, **{**FAST, "max_steps": 4, "eval_every": 2,
                                      "checkpoint_every": 2, "warmup_steps": 0})
    args = (str(config), "--grid", GRID, "--asha", "--jobs", "2", "--out", "abl")
    result = ablate(*args, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    abl = tmp_path / "abl"
    assert "successive halving over 2 rungs (asynchronous)" in result.stdout
    assert result.stdout.count("paused at rung 1") == 4        # every variant trains to step 2
    plan = json.loads((abl / "plan.json").read_text())
    assert plan["halving"]["mode"] == "async" and plan["halving"]["rungs"] == 2
    halving = json.loads((abl / "halving.json").read_text())
    assert halving["mode"] == "async"
    promoted = {p["variant"] for p in halving["promoted"]}
    assert {p["from_rung"] for p in halving["promoted"]} == {0}
    assert "lr=0.003" in promoted and 1 <= len(promoted - {"lr=0.003"}) <= 2  # + the baseline
    assert result.stdout.count(" completed in ") == len(promoted)
    with open(abl / "results.csv", newline="") as handle:
        runs = {row["variant"]: row for row in csv.DictReader(handle)}
    assert {v for v, row in runs.items() if row["status"] == "pruned"} == set(runs) - promoted
    assert {runs[v]["status"] for v in promoted} == {"completed"}
    with open(abl / "summary.csv", newline="") as handle:
        summary = {row["variant"]: row for row in csv.DictReader(handle)}
    assert {v for v, s in summary.items() if s["pruned"] == "True"} == set(runs) - promoted
    assert {summary[v]["rung"] for v in promoted} == {"1"}

    # Done: the same command trains nothing, and keeps the promotions.
    again = ablate(*args, tmp_path=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "[1]" not in again.stdout
    assert json.loads((abl / "halving.json").read_text())["promoted"] == halving["promoted"]
