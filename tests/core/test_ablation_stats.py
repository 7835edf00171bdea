"""Ablation statistics (mean, std, Welch interval) against hand-computed numbers, and reading runs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from llmbricks.core.ablation.results import (
    ROW_FIELDS,
    RunEvents,
    collect_rows,
    eval_curves,
    write_results,
)
from llmbricks.core.ablation.stats import summarize, welch_interval, write_summary


def row(variant: str, loss: float | None, status: str = "completed", k: int = 0, **extra) -> dict:
    return {"variant": variant, "seed_index": k, "status": status, "final_val_loss": loss,
            "best_val_loss": loss, "params": 1000, "tokens_per_s": 100.0, **extra}


def by_name(summary: list[dict]) -> dict[str, dict]:
    return {s["variant"]: s for s in summary}


# --- statistics -----------------------------------------------------------------------------------


def test_equal_variances_give_the_textbook_interval():
    # base 1,2,3 and var 2,3,4: means 2 and 3, sample variances 1 and 1.
    # diff = 1; se = sqrt(1/3 + 1/3) = 0.8164966; df = (2/3)^2 / (2 * (1/3)^2 / 2) = 4;
    # t(0.975, 4) = 2.776445 (any t table); half width = 2.776445 * 0.8164966 = 2.266958.
    rows = [row("base", x, k=i) for i, x in enumerate((1.0, 2.0, 3.0))]
    rows += [row("var", x, k=i) for i, x in enumerate((2.0, 3.0, 4.0))]
    s = by_name(summarize(rows, "base"))
    assert s["var"]["val_loss_mean"] == pytest.approx(3.0)
    assert s["var"]["val_loss_std"] == pytest.approx(1.0)
    assert s["var"]["diff"] == pytest.approx(1.0)
    assert s["var"]["df"] == pytest.approx(4.0)
    assert s["var"]["ci_low"] == pytest.approx(1.0 - 2.266958, abs=1e-6)
    assert s["var"]["ci_high"] == pytest.approx(1.0 + 2.266958, abs=1e-6)


def test_unequal_variances_and_sizes_use_welch_satterthwaite():
    # base 3.0,3.2,3.4: mean 3.2, s^2 = (0.04 + 0 + 0.04) / 2 = 0.04, std 0.2
    # rope 2.9,3.0:     mean 2.95, s^2 = (0.0025 + 0.0025) / 1 = 0.005, std 0.0707107
    # s^2/n: rope 0.0025, base 0.0133333; se = sqrt(0.0158333) = 0.1258306
    # df = 0.0158333^2 / (0.0025^2 / 1 + 0.0133333^2 / 2) = 2.5069444e-4 / 9.5138889e-5 = 2.6350365
    # t(0.975, 2.6350365) = 3.4469382; half width = 3.4469382 * 0.1258306 = 0.4337302
    rows = [row("base", x, k=i) for i, x in enumerate((3.0, 3.2, 3.4))]
    rows += [row("rope", x, k=i) for i, x in enumerate((2.9, 3.0))]
    s = by_name(summarize(rows, "base"))
    assert s["base"]["val_loss_mean"] == pytest.approx(3.2)
    assert s["base"]["val_loss_std"] == pytest.approx(0.2)
    assert s["rope"]["val_loss_std"] == pytest.approx(0.0707107, abs=1e-7)
    assert s["rope"]["diff"] == pytest.approx(-0.25)
    assert s["rope"]["df"] == pytest.approx(2.6350365, abs=1e-6)
    assert s["rope"]["ci_low"] == pytest.approx(-0.25 - 0.4337302, abs=1e-6)
    assert s["rope"]["ci_high"] == pytest.approx(-0.25 + 0.4337302, abs=1e-6)
    assert s["base"]["is_baseline"] and not s["rope"]["is_baseline"]
    assert s["base"]["diff"] == 0.0 and s["base"]["ci_low"] is None  # no interval with itself


def test_a_single_run_has_a_mean_but_no_std_and_no_interval():
    rows = [row("base", 3.0), row("base", 3.2, k=1), row("one", 2.5)]
    s = by_name(summarize(rows, "base"))
    assert s["one"]["n"] == 1 and s["one"]["val_loss_mean"] == 2.5
    assert s["one"]["val_loss_std"] is None
    assert s["one"]["diff"] == pytest.approx(2.5 - 3.1)
    assert s["one"]["ci_low"] is None and s["one"]["ci_high"] is None and s["one"]["df"] is None


def test_failed_missing_and_nan_runs_are_not_counted():
    rows = [row("base", 3.0), row("base", 3.2, k=1), row("base", None, "missing", k=2),
            row("v", 2.0), row("v", 2.2, k=1), row("v", 1.0, "failed", k=2),
            row("v", 1.5, "interrupted", k=3), row("v", None, k=4)]  # completed, nan loss
    s = by_name(summarize(rows, "base"))
    assert (s["base"]["n"], s["base"]["failed"]) == (2, 1)
    assert (s["v"]["n"], s["v"]["failed"]) == (2, 3)
    assert s["v"]["val_loss_mean"] == pytest.approx(2.1)  # the failed run's 1.0 is ignored
    assert s["v"]["diff"] == pytest.approx(2.1 - 3.1)


def test_no_completed_baseline_means_no_diff():
    rows = [row("base", None, "failed"), row("v", 2.0), row("v", 2.2, k=1)]
    s = by_name(summarize(rows, "base"))
    assert s["base"]["n"] == 0 and s["base"]["val_loss_mean"] is None and s["base"]["diff"] is None
    assert s["v"]["diff"] is None and s["v"]["ci_low"] is None


def test_zero_spread_on_both_sides_gives_a_zero_width_interval():
    assert welch_interval([2.0, 2.0], [3.0, 3.0, 3.0]) == (-1.0, -1.0, None)
    # One side with spread: df = n - 1 of that side (the other term vanishes): t(0.975, 1).
    low, high, df = welch_interval([2.0, 2.0], [3.0, 4.0])
    assert df == pytest.approx(1.0)
    # se = sqrt(0.5 / 2) = 0.5; t(0.975, 1) = 12.7062047
    assert (low, high) == pytest.approx((-1.5 - 6.3531024, -1.5 + 6.3531024), abs=1e-6)


def test_summary_keeps_plan_order_and_params_and_throughput():
    rows = [row("b", 3.0, params=10, tokens_per_s=100.0), row("b", 3.0, k=1, params=10,
                                                                 tokens_per_s=300.0),
            row("a", 2.0, params=20)]
    summary = summarize(rows, "a")
    assert [s["variant"] for s in summary] == ["b", "a"]
    assert summary[0]["params"] == 10 and summary[0]["tokens_per_s"] == 200.0


def test_write_summary_csv(tmp_path):
    rows = [row("base", 3.0), row("base", 3.2, k=1), row("one", 2.5)]
    path = write_summary(tmp_path, summarize(rows, "base"))
    with open(path, newline="") as handle:
        lines = list(csv.DictReader(handle))
    assert [r["variant"] for r in lines] == ["base", "one"]
    assert lines[1]["val_loss_std"] == "" and lines[1]["n"] == "1"
    assert float(lines[0]["val_loss_mean"]) == pytest.approx(3.1)


# --- reading an ablation directory ----------------------------------------------------------------

PLAN = {
    "version": 1, "config": "cfg.yaml",
    "grid": {"model.positional": ["absolute", "rope", {"name": "alibi"}]},
    "seeds": [123, 124, 125], "baseline": "positional=absolute",
    "variants": [{"name": "positional=absolute", "overrides": {"model.positional": "absolute"}},
                 {"name": "positional=rope", "overrides": {"model.positional": "rope"}},
                 {"name": "positional=alibi", "overrides": {"model.positional": {"name": "alibi"}}}],
    "created_at": 1700000000.0,
    "command": "llmbricks ablate cfg.yaml --grid model.positional=absolute,rope,{name: alibi}",
}


def metrics(final: float, *, status: str | None = "completed", steps: int = 10) -> list[dict]:
    """start, steps every 5 (5 tokens per step), evals at 5 and 10, then end (unless None)."""
    events = [{"event": "start", "step": 0, "max_steps": steps, "params": 900, "total_params": 1000}]
    for step, val in ((5, final + 0.5), (10, final)):
        if step > steps:
            break
        events.append({"event": "step", "step": step, "loss": val, "tokens": step * 5,
                       "tokens_per_s": 10.0 * step, "elapsed_s": step / 10})
        events.append({"event": "eval", "step": step, "train_loss": val - 0.1, "val_loss": val,
                       "val_ppl": 1.0, "tokens": step * 5, "elapsed_s": step / 10})
    if status is not None:
        events.append({"event": "end", "step": steps, "status": status, "elapsed_s": 2.0,
                       "tokens": steps * 5, "train_loss": final - 0.1, "val_loss": final})
    return events


def put_run(abl: Path, variant: str, k: int, events: list[dict] | None,
            record: dict | None) -> None:
    folder = abl / "runs" / variant
    folder.mkdir(parents=True, exist_ok=True)
    if events is not None:
        (folder / f"seed-{k}").mkdir()
        (folder / f"seed-{k}" / "metrics.jsonl").write_text(
            "".join(json.dumps(e) + "\n" for e in events))
    if record is not None:
        full = {"variant": variant, "seed_index": k, "seed": PLAN["seeds"][k], "error": None,
                "wall_s": 3.5, "returncode": 0, "node": "host-a", **record}
        (folder / f"seed-{k}.json").write_text(json.dumps(full))


def make_ablation(abl: Path) -> Path:
    """absolute: 3 completed; rope: 2 completed + 1 failed before making a run directory;
    alibi: 1 killed without record, 1 missing, 1 completed with no record (end event only)."""
    abl.mkdir(parents=True, exist_ok=True)
    (abl / "plan.json").write_text(json.dumps(PLAN))
    for k, loss in enumerate((3.0, 3.2, 3.4)):
        put_run(abl, "positional=absolute", k, metrics(loss), {"status": "completed"})
    for k, loss in enumerate((2.9, 3.0)):
        put_run(abl, "positional=rope", k, metrics(loss), {"status": "completed"})
    put_run(abl, "positional=rope", 2, None, {"status": "failed", "returncode": 1,
                                               "error": "error: out of memory | try less"})
    (abl / "runs" / "positional=rope" / "seed-2.log").write_text("error: out of memory\n")
    put_run(abl, "positional=alibi", 0, metrics(3.5, status=None, steps=5), None)
    put_run(abl, "positional=alibi", 2, metrics(3.1), None)
    return abl


def test_collect_rows_reads_records_and_metrics_in_plan_order(tmp_path):
    rows = collect_rows(make_ablation(tmp_path / "abl"))
    assert [(r["variant"], r["seed_index"]) for r in rows] == [
        (v, k) for v in ("positional=absolute", "positional=rope", "positional=alibi")
        for k in range(3)]
    assert all(set(r) == set(ROW_FIELDS) for r in rows)
    first = rows[0]
    assert first == {
        "variant": "positional=absolute", "seed": 123, "seed_index": 0, "status": "completed",
        "final_val_loss": 3.0, "best_val_loss": 3.0, "train_loss": pytest.approx(2.9),
        "params": 1000, "tokens_per_s": 75.0,  # median of 50 and 100
        "wall_s": 3.5, "steps": 10, "error": None, "node": "host-a",
        "run_dir": "runs/positional=absolute/seed-0"}
    failed = rows[5]
    assert failed["status"] == "failed" and failed["error"] == "error: out of memory | try less"
    assert failed["final_val_loss"] is None and failed["params"] is None and failed["seed"] == 125
    killed, missing, unrecorded = rows[6:]
    assert killed["status"] == "interrupted" and killed["final_val_loss"] == 4.0
    assert killed["steps"] == 5 and killed["wall_s"] is None
    assert missing["status"] == "missing" and missing["seed"] == 124 and missing["steps"] is None
    assert unrecorded["status"] == "completed" and unrecorded["final_val_loss"] == 3.1
    assert unrecorded["wall_s"] == 2.0  # no record: the end event's elapsed_s
    assert unrecorded["node"] is None  # ... and no node


def test_the_directory_gives_the_hand_computed_summary(tmp_path):
    summary = by_name(summarize(collect_rows(make_ablation(tmp_path)), PLAN["baseline"]))
    rope = summary["positional=rope"]
    assert (rope["n"], rope["failed"]) == (2, 1)
    assert rope["ci_low"] == pytest.approx(-0.6837302, abs=1e-6)  # the Welch case above
    alibi = summary["positional=alibi"]
    assert (alibi["n"], alibi["failed"]) == (1, 2) and alibi["val_loss_mean"] == 3.1


def test_eval_curves_keep_completed_runs_only(tmp_path):
    curves = eval_curves(make_ablation(tmp_path))
    assert list(curves) == ["positional=absolute", "positional=rope", "positional=alibi"]
    assert curves["positional=absolute"][1] == (1, [5, 10], [3.7, 3.2])
    assert [k for k, _, _ in curves["positional=rope"]] == [0, 1]
    assert [k for k, _, _ in curves["positional=alibi"]] == [2]  # the killed run is left out


def test_a_resumed_run_counts_each_step_once():
    killed = [{"event": "start", "step": 0, "total_params": 7},
              {"event": "step", "step": 5, "tokens_per_s": 1.0},
              {"event": "eval", "step": 5, "val_loss": 4.0},
              {"event": "step", "step": 8, "tokens_per_s": 1.0},
              {"event": "eval", "step": 8, "val_loss": 1.0},  # after the checkpoint: redone
              {"event": "end", "step": 8, "status": "interrupted"}]
    resumed = [{"event": "start", "step": 5, "total_params": 7},
               {"event": "resume", "step": 5},
               {"event": "step", "step": 10, "tokens_per_s": 3.0},
               {"event": "eval", "step": 10, "val_loss": 3.0}]
    run = RunEvents.from_events(killed + resumed)
    assert run.val_losses() == ([5, 10], [4.0, 3.0])
    assert run.end is None and run.last_step() == 10  # the killed session's end is stale
    assert run.tokens_per_s() == 2.0
    done = RunEvents.from_events([*killed, *resumed, {"event": "end", "step": 10,
                                                      "status": "completed"}])
    assert done.end["status"] == "completed"


def test_throughput_falls_back_to_the_end_event_and_nan_losses_are_null():
    run = RunEvents.from_events([{"event": "eval", "step": 3, "val_loss": None, "train_loss": 2.0},
                                 {"event": "end", "step": 3, "tokens": 300, "elapsed_s": 2.0}])
    assert run.tokens_per_s() == 150.0
    assert run.last_eval("val_loss") is None and run.last_eval("train_loss") == 2.0
    assert run.val_losses() == ([], [])


def test_write_results_csv_and_json(tmp_path):
    abl = make_ablation(tmp_path)
    rows = collect_rows(abl)
    csv_path, json_path = write_results(abl, rows)
    with open(csv_path, newline="") as handle:
        lines = list(csv.DictReader(handle))
    assert len(lines) == 9 and list(lines[0]) == list(ROW_FIELDS)
    assert lines[5]["error"] == "error: out of memory | try less" and lines[5]["params"] == ""
    assert float(lines[0]["final_val_loss"]) == 3.0
    assert json.loads(json_path.read_text()) == rows
    assert sorted(p.name for p in abl.iterdir() if p.name.startswith(".")) == []  # no temp files
