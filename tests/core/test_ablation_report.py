"""The ablation report: rebuilt from the directory alone, the same each time."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from rich.console import Console
from scipy import stats

from llmbricks.core.ablation.report import build_report, mean_band, rich_table
from llmbricks.core.errors import ConfigError
from tests.core.test_ablation_stats import PLAN, make_ablation

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
OUTPUTS = ("results.csv", "results.json", "summary.csv", "report.md", "curves.png", "final.png",
           "forest.png")


def test_build_report_writes_every_file_from_the_directory(tmp_path):
    abl = make_ablation(tmp_path / "abl")
    summary, rows = build_report(abl)
    assert len(rows) == 9 and [s["variant"] for s in summary] == [
        v["name"] for v in PLAN["variants"]]
    for name in OUTPUTS:
        assert (abl / name).is_file(), name
    for name in ("curves.png", "final.png", "forest.png"):
        assert (abl / name).read_bytes()[:8] == PNG_SIGNATURE
    assert not [p.name for p in abl.iterdir() if p.name.startswith(".")]  # no temp files left
    with open(abl / "summary.csv", newline="") as handle:
        lines = {r["variant"]: r for r in csv.DictReader(handle)}
    assert lines["positional=rope"]["n"] == "2" and lines["positional=rope"]["failed"] == "1"
    assert json.loads((abl / "results.json").read_text())[0]["final_val_loss"] == 3.0


def test_report_md_holds_the_plan_the_tables_the_failures_and_the_figures(tmp_path):
    abl = make_ablation(tmp_path / "abl")
    build_report(abl)
    text = (abl / "report.md").read_text()
    assert text.startswith("# Ablation: cfg.yaml (budget: steps)\n")
    assert f"- command: `{PLAN['command']}`" in text
    assert "- seeds: 123, 124, 125" in text and "- baseline: `positional=absolute`" in text
    assert '| `model.positional` | `absolute`, `rope`, `{"name": "alibi"}` |' in text
    # Summary sorted by mean loss: rope 2.95, alibi 3.1 (one run), absolute 3.2 (the baseline).
    summary = text.split("## Summary")[1].split("## Figures")[0]
    assert summary.index("positional=rope") < summary.index("positional=alibi") < summary.index(
        "**positional=absolute** (baseline)")
    # rope and the baseline completed seeds 0 and 1: d = 2.9 - 3.0, 3.0 - 3.2 = -0.1, -0.2;
    # mean -0.15, s_d = 0.0707, se = 0.05, t(0.975, 1) = 12.7062: [-0.7853, +0.4853];
    # t = 3 on 1 df: p = 0.2048 (one comparison, so Holm leaves it).
    assert ("| 1 | positional=rope | 2.9500 ± 0.0707 | 2 | 1 | 2.9500 | -0.1500 | "
            "[-0.7853, +0.4853] | paired t | 0.205 | no clear difference | 1.00K | 75 |") in summary
    assert ("| 3 | **positional=absolute** (baseline) | 3.2000 ± 0.2000 | 3 | 0 | 3.2000 | - | - "
            "| - | - | baseline |") in summary
    assert "| -0.1000 | - | - | - | too few runs |" in summary  # alibi: one run
    assert ("- positional=rope cannot be told apart from positional=absolute (-0.1500 nats, "
            "95% CI [-0.7853, +0.4853], paired t over 2 seeds, Holm-adjusted p = 0.205).") in summary
    assert "](forest.png)" in text
    assert "![validation loss, mean over seeds" in text and "](curves.png)" in text
    assert "](final.png)" in text
    assert ("| positional=absolute | 123 (seed-0) | completed | 3.0000 | 3.0000 | 2.9000 | 10 | "
            "75 | 0:00:04 | [runs/positional=absolute/seed-0](runs/positional=absolute/seed-0/) |"
            ) in text
    failures = text.split("## Failures")[1]
    assert ("- `positional=rope` seed-2 (seed 125): failed: `error: out of memory | try less` "
            "([log](runs/positional=rope/seed-2.log))") in failures
    assert "- `positional=alibi` seed-0 (seed 123): interrupted (run the same command" in failures
    assert "- `positional=alibi` seed-1 (seed 124): never ran" in failures
    assert "positional=absolute" not in failures


def test_rebuilding_gives_the_same_report(tmp_path):
    abl = make_ablation(tmp_path / "abl")
    build_report(abl)
    first = {name: (abl / name).read_bytes() for name in OUTPUTS if name.endswith((".md", ".csv",
                                                                                  ".json"))}
    summary, _ = build_report(abl)
    assert {name: (abl / name).read_bytes() for name in first} == first


def test_a_directory_without_a_plan_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="is not an ablation directory"):
        build_report(tmp_path)


def test_an_ablation_with_nothing_run_yet_still_reports(tmp_path):
    (tmp_path / "plan.json").write_text(json.dumps(PLAN))
    summary, rows = build_report(tmp_path)
    assert {r["status"] for r in rows} == {"missing"} and all(s["n"] == 0 for s in summary)
    assert (tmp_path / "curves.png").read_bytes()[:8] == PNG_SIGNATURE
    assert (tmp_path / "final.png").read_bytes()[:8] == PNG_SIGNATURE
    assert "never ran" in (tmp_path / "report.md").read_text()


def test_rich_table_is_sorted_and_marks_the_baseline(tmp_path):
    summary, _ = build_report(make_ablation(tmp_path / "abl"))
    console = Console(width=200, record=True, color_system=None)
    console.print(rich_table(summary))
    text = console.export_text()
    lines = [line for line in text.splitlines() if "positional=" in line]
    assert [line.split()[1] for line in lines] == ["positional=rope", "positional=alibi",
                                                   "positional=absolute"]
    assert "positional=absolute *" in text and "* baseline" in text
    assert "2.9500 ± 0.0707" in text and "[-0.7853, +0.4853]" in text and "0.205" in text
    assert "1 (+2 not counted)" in text


def test_mean_band_is_the_95_percent_interval_of_the_mean_over_seeds():
    # Two seeds at 5 and 10: mean 4.5 and 2.5, s = 0.7071 at both, half = t_{0.975,1} s / sqrt(2)
    # = 12.7062 * 0.5 = 6.3531.
    same = [(0, [5, 10], [4.0, 3.0]), (1, [5, 10], [5.0, 2.0])]
    steps, mean, low, high = mean_band(same)
    assert steps == [5, 10] and mean == pytest.approx([4.5, 2.5])
    half = 12.706204736174707 * 0.5
    assert low == pytest.approx([4.5 - half, 2.5 - half]) and high == pytest.approx([4.5 + half,
                                                                                    2.5 + half])
    # Three seeds: the interval is scipy's t interval of the mean.
    three = [(k, [1, 2], [v, v + 1]) for k, v in enumerate([1.0, 1.2, 1.7])]
    _, mean, low, high = mean_band(three)
    theirs = stats.t.interval(0.95, 2, loc=np.mean([1.0, 1.2, 1.7]),
                              scale=stats.sem([1.0, 1.2, 1.7]))
    assert (low[0], high[0]) == pytest.approx(theirs)
    # One seed: no band.
    assert mean_band([(0, [5, 10], [4.0, 3.0])]) == ([5, 10], [4.0, 3.0], [4.0, 3.0], [4.0, 3.0])


def test_mean_band_interpolates_seeds_that_evaluate_at_different_steps():
    # Seed 1 evaluates at 4 and 8 only: the common range is 5..8; at 5 seed 1 is interpolated
    # between (4, 6.0) and (8, 2.0) -> 5.0; at 8 seed 0 is between (5, 4.0) and (10, 3.0) -> 3.4.
    shifted = [(0, [5, 10], [4.0, 3.0]), (1, [4, 8], [6.0, 2.0])]
    steps, mean, low, high = mean_band(shifted)
    assert steps == [5, 8]
    assert mean == pytest.approx([4.5, 2.7])
    assert [h - m for h, m in zip(high, mean, strict=True)] == pytest.approx(
        [12.706204736174707 * 0.5, 12.706204736174707 * 0.7])  # |d| / 2 x t: 0.5, 0.7


def test_curves_against_tokens_flops_or_seconds_and_svg_on_request(tmp_path):
    from llmbricks.core.ablation.results import curves_from, read_runs

    abl = make_ablation(tmp_path / "abl")
    runs = read_runs(abl)
    by_tokens = curves_from(runs, "tokens")["positional=absolute"]
    assert [xs for _, xs, _ in by_tokens] == [[25, 50]] * 3            # 5 tokens per step
    assert [xs for _, xs, _ in curves_from(runs, "seconds")["positional=absolute"]] == \
        [[0.5, 1.0]] * 3
    flops = curves_from(runs, "flops", {"positional=absolute": 1e6})["positional=absolute"]
    assert [xs for _, xs, _ in flops] == [[25e6, 50e6]] * 3
    build_report(abl, x="tokens", svg=True)
    for name in ("curves", "final", "forest"):
        assert (abl / f"{name}.svg").read_text().lstrip().startswith("<?xml")
    with pytest.raises(ConfigError, match="records no FLOPs per token"):
        build_report(abl, x="flops")
    plan = json.loads((abl / "plan.json").read_text())
    plan["match"] = {"unit": "steps", "flops_per_token": {"positional=absolute": 1e6,
                                                          "positional=rope": None}}
    (abl / "plan.json").write_text(json.dumps(plan))
    with pytest.raises(ConfigError, match="records no FLOPs per token for every variant"):
        build_report(abl, x="flops")
    with pytest.raises(ConfigError, match="--x hours: choose one of step, tokens, flops, seconds"):
        build_report(abl, x="hours")
