"""Successive halving: the rungs, who is pruned, the decisions read back from the runs, and the
statistics of a pruned variant taken at its own rung against the baseline's."""

from __future__ import annotations

import pytest

from llmbricks.core.ablation.halving import PAUSED, decide, halving_view, loss_at, prune, pruned_at
from llmbricks.core.ablation.results import RunEvents
from llmbricks.core.ablation.rungs import halving_share, plan_rungs, rung_count, rung_steps
from llmbricks.core.errors import ConfigError


@pytest.mark.parametrize(("variants", "rungs"), [(3, 2), (4, 2), (5, 3), (6, 3), (8, 3), (9, 4),
                                                 (20, 5)])
def test_rungs_halve_down_to_the_baseline_and_one_other(variants, rungs):
    assert rung_count(variants) == rungs


def test_rung_steps_double_up_to_the_budget():
    assert rung_steps(2000, 3) == [500, 1000, 2000]
    assert rung_steps(10, 2) == [5, 10] and rung_steps(7, 2) == [4, 7]


def test_plan_rungs_refuses_what_cannot_halve():
    assert plan_rungs({"a": 8, "b": 8, "c": 16, "d": 4}) == {
        "rungs": 2, "steps": {"a": [4, 8], "b": [4, 8], "c": [8, 16], "d": [2, 4]}}
    with pytest.raises(ConfigError, match="needs 3 variants or more"):
        plan_rungs({"a": 8, "b": 8})
    with pytest.raises(ConfigError, match="b trains for train.epochs"):
        plan_rungs({"a": 8, "b": None, "c": 8})
    with pytest.raises(ConfigError, match="c's 1 steps are too few for 2 rungs"):
        plan_rungs({"a": 8, "b": 8, "c": 1})


def test_prune_drops_the_worse_half_but_never_the_baseline():
    losses = {"base": {0: 3.0}, "a": {0: 1.0}, "b": {0: 2.0}, "c": {0: 2.5}}
    assert prune(losses, ["base", "a", "b", "c"], "base") == ["c", "b"]  # base is worst: kept
    losses["base"] = {0: 0.5}
    assert prune(losses, ["base", "a", "b", "c"], "base") == ["c", "b"]
    # A variant with no loss at the rung (every seed failed) is ranked last.
    assert prune({"base": {0: 2.0}, "a": {0: 1.0}, "b": {}}, ["base", "a", "b"], "base") == ["b"]


def run(variant: str, k: int, status: str, evals: dict[int, float]) -> tuple[dict, RunEvents]:
    events = RunEvents.from_events([{"event": "start", "step": 0}] + [
        {"event": "eval", "step": s, "val_loss": v} for s, v in evals.items()])
    row = {"variant": variant, "seed_index": k, "seed": 7 + k, "status": status,
           "final_val_loss": list(evals.values())[-1] if evals else None, "best_val_loss": None,
           "params": 100, "tokens_per_s": 1.0}
    return row, events


HALVING = {"rungs": 2, "steps": {v: [4, 8] for v in ("base", "a", "b", "c")}}
ALL = ["base", "a", "b", "c"]


def test_decide_prunes_two_of_four_from_the_losses_at_the_rung():
    runs = [run("base", k, PAUSED, {4: 2.0 + k / 100}) for k in range(2)] + \
           [run("a", k, PAUSED, {4: 1.5 + k / 50}) for k in range(2)] + \
           [run("b", k, PAUSED, {4: 2.5}) for k in range(2)] + \
           [run("c", k, PAUSED, {4: 2.6 - k / 10}) for k in range(2)]
    rungs = decide(HALVING, "base", ALL, runs)
    assert [r.index for r in rungs] == [0, 1]
    assert rungs[0].settled and rungs[0].pruned == ["c", "b"]  # worst first and rungs[1].alive == ["base", "a"]
    assert not rungs[1].settled                      # the survivors have not trained on yet
    assert pruned_at(rungs) == {"b": 0, "c": 0}


def test_a_rung_waits_for_its_runs_unless_a_failed_one_was_already_retried():
    runs = [run(v, 0, PAUSED, {4: 2.0}) for v in ("base", "a", "b")] + [run("c", 0, "failed", {})]
    assert not decide(HALVING, "base", ALL, runs)[0].settled
    rungs = decide(HALVING, "base", ALL, runs, tried=lambda v, k, r: (v, k, r) == ("c", 0, 0))
    assert rungs[0].settled and "c" in rungs[0].pruned   # no loss: ranked last


def test_the_view_compares_a_pruned_variant_at_its_rung_with_the_baseline_at_that_step():
    runs = [run("base", k, "completed", {4: 2.0 + k / 10, 8: 1.5 + k / 10}) for k in range(3)] + \
           [run("a", k, "completed", {4: 1.9 + k / 10, 8: 1.3 + k / 10 + k * k / 200}) for k in range(3)] + \
           [run("b", k, PAUSED, {4: 2.2 + k / 10 + k * k / 100}) for k in range(3)] + \
           [run("c", k, PAUSED, {4: 2.4 + k / 10}) for k in range(3)]
    rungs, summary, rows = halving_view(HALVING, "base", ALL, runs)
    by = {s["variant"]: s for s in summary}
    assert by["a"]["rung"] == 1 and not by["a"]["pruned"]
    assert by["a"]["diff_paired"] == pytest.approx(-0.2 + 5 / 600)  # 1.3 - 1.5 at step 8
    assert by["b"]["rung"] == 0 and by["b"]["pruned"]
    assert by["b"]["diff_paired"] == pytest.approx(0.2 + 5 / 300)  # vs base at step 4, not 8
    assert by["c"]["diff_paired"] == pytest.approx(0.4) and by["c"]["ci_paired_low"] == \
        pytest.approx(0.4)                                       # zero spread: [d, d]
    assert {r["status"] for r in rows if r["variant"] in ("b", "c")} == {"pruned"}
    assert {r["status"] for r in rows if r["variant"] in ("base", "a")} == {"completed"}
    # Holm over the three comparisons, whichever rung each was made at.
    assert by["base"]["p_holm"] is None and by["a"]["p_holm"] is not None


def test_loss_at_reads_the_evaluation_at_that_step_only():
    _, events = run("a", 0, PAUSED, {4: 2.0, 8: 1.0})
    assert loss_at(events, 4) == 2.0 and loss_at(events, 6) is None


def test_halving_share_is_the_steps_a_halving_trains_over_the_full_grids():
    # 6 variants of 2,000 steps: 6 x 500, then 3 x 500 more, then 2 x 1,000 more = 6,500 of 12,000.
    assert halving_share(plan_rungs({v: 2000 for v in "abcdef"})) == pytest.approx(6500 / 12000)
    # 4 variants: 4 x 2 then 2 x 2 = 12 of 16. Unequal budgets: the largest taken as the alive.
    assert halving_share(plan_rungs({v: 4 for v in "abcd"})) == pytest.approx(0.75)
    assert halving_share(plan_rungs({"a": 8, "b": 4, "c": 4, "d": 4})) == pytest.approx(
        (4 + 2 + 2 + 2 + 4 + 2) / 20)
