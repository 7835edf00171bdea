"""Power before spending: the paired t test's power against statsmodels, the seeds needed and
the minimum detectable effect at their boundaries, and reading a pilot's spread."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from llmbricks.core.ablation.power import (
    Pilot,
    Spread,
    detectable_effect,
    pilot_overrides,
    plan_power,
    power,
    read_pilot,
    seeds_needed,
)
from llmbricks.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("n", "delta", "sd", "alpha"), [
    (3, 0.01, 0.003, 0.05), (5, 0.02, 0.01, 0.01), (12, 0.005, 0.01, 0.05), (2, 0.1, 0.05, 0.05),
    (40, 0.001, 0.004, 0.0125), (300, 0.002, 0.01, 0.05)])
def test_power_equals_statsmodels(n, delta, sd, alpha):
    ttest_power = pytest.importorskip("statsmodels.stats.power").TTestPower
    theirs = ttest_power().power(effect_size=delta / sd, nobs=n, alpha=alpha)
    assert power(n, delta, sd, alpha) == pytest.approx(theirs, rel=1e-7)


def test_power_where_scipy_nct_gives_nan():
    # scipy's noncentral t returns nan here (statsmodels with it); the integral does not.
    value = power(3, 0.03, 0.006770602843285316, 0.01)
    assert 0.4 < value < 0.5 and not math.isnan(value)


def test_power_by_hand_for_a_huge_effect_and_the_edges():
    assert power(10, 1.0, 0.001) == pytest.approx(1.0)
    assert power(1, 1.0, 0.1) == 0.0                     # one pair: no spread, no test
    assert power(3, 0.1, 0.0) == 1.0                     # zero spread: any difference shows
    # No difference: the test rejects at its level, alpha.
    assert power(6, 0.0, 0.01, 0.05) == pytest.approx(0.05, abs=1e-9)


@pytest.mark.parametrize(("delta", "sd"), [(0.01, 0.003), (0.01, 0.0097), (0.05, 0.0108),
                                           (0.002, 0.01)])
def test_seeds_needed_is_the_first_n_with_80_percent_power(delta, sd):
    n = seeds_needed(delta, sd, alpha=0.01)
    assert n is not None and n >= 2
    assert power(n, delta, sd, 0.01) >= 0.8
    if n > 2:
        assert power(n - 1, delta, sd, 0.01) < 0.8


def test_seeds_needed_edges():
    assert seeds_needed(0.0, 0.01) is None                 # nothing to detect
    assert seeds_needed(1e-6, 1.0) is None                 # beyond 10,000 seeds
    assert seeds_needed(0.05, 0.0) == 2                    # no noise: the fewest that test


def test_detectable_effect_has_exactly_80_percent_power():
    effect = detectable_effect(3, 0.0097, alpha=0.01)
    assert effect is not None and power(3, effect, 0.0097, 0.01) == pytest.approx(0.8, abs=1e-9)
    # statsmodels' solve_power meets scipy's nan on the way here; its power at our answer is 80%.
    ttest_power = pytest.importorskip("statsmodels.stats.power").TTestPower
    assert ttest_power().power(effect / 0.0097, 3, 0.01) == pytest.approx(0.8, abs=1e-6)
    assert detectable_effect(1, 0.01) is None and detectable_effect(5, 0.0) == 0.0


def write_ablation_csvs(directory: Path, losses: dict[str, list[float | None]], baseline: str) -> Path:
    """A committed report without its runs: results.csv and summary.csv only."""
    directory.mkdir()
    with open(directory / "results.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["variant", "seed", "seed_index", "status", "final_val_loss"])
        for variant, values in losses.items():
            for k, value in enumerate(values):
                writer.writerow([variant, 7 + k, k, "completed" if value is not None else "failed",
                                 "" if value is None else value])
    with open(directory / "summary.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["variant", "is_baseline"])
        writer.writerows([v, v == baseline] for v in losses)
    return directory


def test_a_pilot_from_results_csv_pairs_seeds_and_falls_back_to_unpaired(tmp_path):
    pilot = read_pilot(write_ablation_csvs(tmp_path / "abl", {
        "base": [2.0, 2.1, 2.2], "shifted": [1.9, 2.0, 2.1], "noisy": [2.0, 2.3, 2.1],
        "half": [None, None, 2.0]}, "base"))
    spreads = {s.variant: s for s in pilot.spreads}
    assert pilot.baseline == "base" and set(spreads) == {"shifted", "noisy"}
    # shifted moves every seed by -0.1: no spread of the differences at all.
    assert spreads["shifted"] == Spread("shifted", pytest.approx(0.0, abs=1e-12), 3, True)
    assert spreads["noisy"].sd == pytest.approx(_stdev([0.0, 0.2, -0.1]))   # d = x_V - x_B
    assert pilot.largest.variant == "noisy"


def _stdev(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def test_unpaired_spread_when_the_seeds_do_not_pair(tmp_path):
    # The variant's seeds 1, 2 against the baseline's 0, 1 pair at seed 1 only: unpaired.
    pilot = read_pilot(write_ablation_csvs(tmp_path / "abl", {
        "base": [2.0, 2.2, None], "other": [None, 2.1, 2.4]}, "base"))
    (spread,) = pilot.spreads
    assert not spread.paired and spread.n == 2
    assert spread.sd == pytest.approx(math.sqrt(0.02 + 0.045))   # sqrt(s_V^2 + s_B^2)


def test_a_pilot_without_spread_or_without_an_ablation_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="no variant has 2 completed seeds"):
        read_pilot(write_ablation_csvs(tmp_path / "one", {"base": [2.0], "b": [1.9]}, "base"))
    with pytest.raises(ConfigError, match="not an ablation directory"):
        read_pilot(tmp_path)


def test_the_committed_positional_ablation_gives_seeds_for_0_01_and_0_05_nats():
    pilot = read_pilot(REPO / "docs" / "ablations" / "positional")
    alpha, rows = plan_power(pilot, [0.01, 0.05], planned_seeds=3, comparisons=5)
    assert alpha == pytest.approx(0.01) and len(rows) == 5
    for row in rows:
        assert row.paired
        few, many = row.seeds[0.05], row.seeds[0.01]
        assert few is not None and many is not None and 2 <= few <= many
        assert power(many, 0.01, row.sd, alpha) >= 0.8
        assert row.detectable is not None and power(3, row.detectable, row.sd, alpha) == \
            pytest.approx(0.8, abs=1e-6)


def test_plan_power_uses_bonferronis_level_for_holms_first_step():
    pilot = Pilot("p", "base", [Spread("v", 0.01, 3, True)])
    alpha_one, (one,) = plan_power(pilot, [0.02], planned_seeds=3, comparisons=1)
    alpha_five, (five,) = plan_power(pilot, [0.02], planned_seeds=3, comparisons=5)
    assert (alpha_one, alpha_five) == pytest.approx((0.05, 0.01))
    assert five.seeds[0.02] > one.seeds[0.02] and five.detectable > one.detectable


def test_pilot_overrides_cut_the_budget_to_one_evaluation():
    assert pilot_overrides(50) == ["train.max_steps=50", "train.epochs=null",
                                   "train.max_tokens=null", "train.eval_every=50",
                                   "train.warmup_steps=5"]
