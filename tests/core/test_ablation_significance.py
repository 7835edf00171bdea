"""Paired intervals, p-values and Holm's adjustment: against hand-computed values and scipy /
statsmodels, with the edge cases (one seed, zero spread, missing runs and baseline)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from llmbricks.core.ablation.significance import bootstrap_mean, holm, pair_up, paired, welch_p
from llmbricks.core.ablation.stats import summarize


def test_paired_t_by_hand():
    # d = 0.1, 0.2, 0.3: mean 0.2, s_d 0.1, se 0.1/sqrt(3), t = 2 sqrt(3), t_{0.975,2} = 4.3027
    result = paired([0.1, 0.2, 0.3])
    half = 4.302652729749464 * 0.1 / math.sqrt(3)
    assert result.n == 3 and result.diff == pytest.approx(0.2)
    assert (result.low, result.high) == pytest.approx((0.2 - half, 0.2 + half))
    assert result.p == pytest.approx(0.07417990022744858)   # 2 * (1 - T_2(3.4641))
    assert result.effect == pytest.approx(2.0)                # d_z = 0.2 / 0.1


@pytest.mark.parametrize("seed", range(5))
def test_paired_t_equals_scipy_ttest_rel(seed):
    rng = np.random.default_rng(seed)
    base = rng.normal(2.0, 0.05, 6)
    variant = base + rng.normal(-0.01, 0.01, 6)
    result = paired(list(variant - base))
    theirs = stats.ttest_rel(variant, base)
    interval = theirs.confidence_interval(0.95)
    assert result.p == pytest.approx(theirs.pvalue, rel=1e-10)
    assert (result.low, result.high) == pytest.approx((interval.low, interval.high), rel=1e-10)


def test_welch_p_equals_scipy():
    a, b = [1.90, 1.91, 1.93], [1.80, 1.83, 1.81, 1.79]
    assert welch_p(a, b) == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
    assert welch_p([1.0], b) is None and welch_p([1.0, 1.0], [2.0, 2.0]) is None


def test_holm_by_hand_and_equals_statsmodels():
    multipletests = pytest.importorskip("statsmodels.stats.multitest").multipletests
    p = {"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.5}
    # sorted 0.01 0.03 0.04 0.5 -> 4 x 0.01, 3 x 0.03, max(0.09, 2 x 0.04), max(0.09, 0.5)
    assert holm(p) == pytest.approx({"a": 0.04, "c": 0.09, "b": 0.09, "d": 0.5})
    rng = np.random.default_rng(0)
    for _ in range(20):
        values = rng.uniform(0, 0.3, rng.integers(1, 9)).tolist()
        theirs = multipletests(values, method="holm")[1]
        ours = holm({str(i): v for i, v in enumerate(values)})
        assert [ours[str(i)] for i in range(len(values))] == pytest.approx(list(theirs))


def test_holm_skips_missing_p_values():
    assert holm({"a": 0.02, "b": None, "c": 0.04}) == {"a": pytest.approx(0.04), "b": None,
                                                      "c": pytest.approx(0.04)}
    assert holm({}) == {}


def test_bootstrap_is_repeatable_and_brackets_the_mean():
    d = [-0.02, -0.01, -0.03, -0.015, -0.025]
    low, high = bootstrap_mean(d)
    assert (low, high) == bootstrap_mean(d)          # a fixed seed
    assert min(d) <= low < np.mean(d) < high <= max(d)


def test_edge_cases():
    assert paired([]) is None
    one = paired([0.1])
    assert one.n == 1 and one.low is None and one.p is None
    flat = paired([0.05, 0.05, 0.05])                 # the same shift on every seed
    assert flat.low == flat.high == pytest.approx(0.05) and flat.p is None
    assert pair_up({1: 2.0, 2: 3.0, 4: 1.0}, {2: 2.5, 3: 1.0, 4: 1.5}) == [0.5, -0.5]


def rows(variant: str, losses: dict[int, float | None], status: str = "completed") -> list[dict]:
    """Runs of ``variant``, keyed by seed index (run k of every variant is a pair)."""
    return [{"variant": variant, "seed": 100 + k, "seed_index": k, "status": status,
             "final_val_loss": loss, "best_val_loss": loss, "params": 10, "tokens_per_s": 1.0}
            for k, loss in losses.items()]


def test_pairing_removes_the_shared_seed_noise():
    """Same config under two names: per-seed losses equal, so the paired interval is [0, 0]
    while Welch's, blind to the pairing, spans the seeds' spread."""
    seeds = {1: 1.90, 2: 1.95, 3: 1.85, 4: 1.99}
    summary = summarize(rows("base", seeds) + rows("renamed", seeds)
                        + rows("shifted", {s: x - 0.01 for s, x in seeds.items()}), "base")
    base, renamed, shifted = summary
    assert renamed["test"] == "paired t" and renamed["n_pairs"] == 4
    assert (renamed["ci_paired_low"], renamed["ci_paired_high"]) == (0.0, 0.0)
    assert renamed["ci_low"] < -0.05 and renamed["ci_high"] > 0.05   # Welch: wide, contains 0
    # A constant shift: exact in pairs ([-0.01, -0.01]), invisible to Welch.
    assert shifted["ci_paired_low"] == pytest.approx(-0.01)
    assert shifted["ci_low"] < 0 < shifted["ci_high"]
    assert base["test"] is None and base["p_holm"] is None


def test_a_failed_run_drops_its_pair_and_a_lone_pair_falls_back_to_welch():
    summary = summarize(rows("base", {1: 1.9, 2: 1.8, 3: 1.85})
                        + rows("v", {1: 1.7, 2: 1.75})
                        + rows("v", {3: None}, status="failed")
                        + rows("w", {1: 1.6}) + rows("w", {2: 1.7, 3: 1.65}, status="failed"),
                        "base")
    v, w = summary[1], summary[2]
    assert v["n_pairs"] == 2 and v["failed"] == 1 and v["test"] == "paired t"
    assert w["n_pairs"] == 1 and w["test"] is None and w["p"] is None  # one run: no interval


def test_a_missing_baseline_gives_no_comparison():
    summary = summarize(rows("v", {1: 1.7, 2: 1.75}), "base")
    assert summary[0]["diff"] is None and summary[0]["n_pairs"] == 0 and summary[0]["p"] is None


def test_holm_across_the_grid_in_the_summary():
    seeds = {1: 1.90, 2: 1.95, 3: 1.85}
    summary = summarize(rows("base", seeds)
                        + rows("a", {1: 1.80, 2: 1.86, 3: 1.74})
                        + rows("b", {1: 1.91, 2: 1.94, 3: 1.86}), "base")
    ps = {s["variant"]: s["p"] for s in summary[1:]}
    assert {s["variant"]: s["p_holm"] for s in summary[1:]} == pytest.approx(holm(ps))
    assert summary[1]["p_holm"] >= summary[1]["p"]


def test_seeds_that_do_not_pair_fall_back_to_welch_and_say_so():
    from llmbricks.core.ablation.report import sentence

    summary = summarize(rows("base", {1: 1.90, 2: 1.92}) + rows("v", {1: None, 2: None}, "failed")
                        + rows("v", {3: 1.70, 4: 1.71}), "base")
    v = summary[1]
    assert v["n_pairs"] == 0 and v["test"] == "Welch t" and v["p"] == pytest.approx(v["p_welch"])
    text = sentence(v, "base")
    assert text.startswith("v is better than base by 0.2050 nats (95% CI [")
    assert "Welch t over 2 runs, unpaired, Holm-adjusted p = " in text
