"""Power before spending: how many seeds a comparison needs to detect a given difference.

A pilot (an earlier ablation, or short runs of this one) measures how much a variant's loss
moves against the baseline's from seed to seed: ``s_d``, the standard deviation of the paired
differences ``d_k = x_Vk - x_Bk`` (or, when the runs do not pair, ``sqrt(s_V^2 + s_B^2)``, the
spread of a difference of two unrelated runs; the power below then is a conservative bound, as
Welch's test over n runs a side has up to 2n - 2 degrees of freedom, not n - 1). With n paired
seeds the paired t statistic
``t = mean d / (s_d / sqrt(n))`` follows, when the true difference is ``delta``, a noncentral t
distribution:

    t ~ T'(df = n - 1, nc = delta * sqrt(n) / s_d)
    power(n, delta) = P(|t| > t_{1 - alpha/2, n-1})
                    = 1 - T'.cdf(t_crit) + T'.cdf(-t_crit)

The seeds needed are the smallest n >= 2 with power >= 80%; the minimum detectable effect (MDE)
of the planned seeds is the delta whose power is exactly 80%. ``alpha`` is 0.05 divided by the
number of comparisons the report will make (Bonferroni): Holm's adjustment tests the smallest
p-value at exactly that level, so the seeds are enough for it whatever the other p-values are.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, LlmbricksError

POWER = 0.80
ALPHA = 0.05
MAX_SEEDS_SEARCHED = 10_000


def power(n: int, delta: float, sd: float, alpha: float = ALPHA) -> float:
    """The chance that ``n`` paired seeds find a true difference ``delta`` significant at ``alpha``."""
    if n < 2:
        return 0.0  # one pair measures no spread: no test at all
    if sd == 0.0:
        return 1.0 if delta != 0.0 else alpha
    from scipy.stats import nct, t

    df = n - 1
    critical = float(t.ppf(1 - alpha / 2, df))                  # t_{1 - alpha/2, n-1}
    noncentrality = abs(delta) * math.sqrt(n) / sd              # nc = delta sqrt(n) / s_d
    value = float(nct.sf(critical, df, noncentrality) + nct.cdf(-critical, df, noncentrality))
    return value if math.isfinite(value) else _power_by_integral(critical, df, noncentrality)


def _power_by_integral(critical: float, df: int, noncentrality: float) -> float:
    """The same probability integrated over V (scipy's nct returns nan for some arguments):

        t' = (Z + nc) / sqrt(V / df),  Z ~ N(0, 1),  V ~ chi2(df)
        P(|t'| > c) = E_V[ Phi(-(c sqrt(V/df) - nc)) + Phi(-c sqrt(V/df) - nc) ]
    """
    from scipy.integrate import quad
    from scipy.stats import chi2, norm

    def rejected(v: float) -> float:
        scale = critical * math.sqrt(v / df)
        return (norm.sf(scale - noncentrality) + norm.cdf(-scale - noncentrality)) * chi2.pdf(v, df)

    low, high = chi2.ppf(1e-13, df), chi2.isf(1e-13, df)      # where V's mass is, for any df
    return float(min(1.0, quad(rejected, low, high, limit=200)[0]))


def seeds_needed(delta: float, sd: float, alpha: float = ALPHA, target: float = POWER) -> int | None:
    """The fewest seeds (at least 2) with ``power >= target``; None beyond 10,000 seeds."""
    if delta == 0.0:
        return None  # no number of seeds detects a difference of nothing
    low, high = 2, 2
    while power(high, delta, sd, alpha) < target:               # doubling, then bisection
        low, high = high, high * 2
        if high > MAX_SEEDS_SEARCHED:
            return None
    while low < high:
        middle = (low + high) // 2
        if power(middle, delta, sd, alpha) >= target:
            high = middle
        else:
            low = middle + 1
    return high


def detectable_effect(n: int, sd: float, alpha: float = ALPHA, target: float = POWER) -> float | None:
    """The smallest difference ``n`` paired seeds detect with ``target`` power (None for n < 2)."""
    if n < 2:
        return None
    if sd == 0.0:
        return 0.0
    from scipy.optimize import brentq

    high = sd
    while power(n, high, sd, alpha) < target:                   # bracket the root
        high *= 2
    return float(brentq(lambda delta: power(n, delta, sd, alpha) - target, 0.0, high, xtol=1e-12))


@dataclass(frozen=True)
class Spread:
    """How much one comparison's difference moves from seed to seed, measured by a pilot."""

    variant: str
    sd: float            # s_d of the paired differences, or sqrt(s_V^2 + s_B^2) unpaired
    n: int               # the pairs (or, unpaired, the smaller sample) it was measured over
    paired: bool


def spread_of(variant: str, diffs: Sequence[float], mine: Sequence[float],
              base: Sequence[float]) -> Spread | None:
    """The pilot's spread for one comparison: paired when 2 seeds pair up, else unpaired."""
    import statistics

    if len(diffs) >= 2:
        return Spread(variant, statistics.stdev(diffs), len(diffs), True)
    if len(mine) >= 2 and len(base) >= 2:
        sd = math.sqrt(statistics.variance(mine) + statistics.variance(base))
        return Spread(variant, sd, min(len(mine), len(base)), False)
    return None


@dataclass(frozen=True)
class Pilot:
    """What a pilot ablation measured: its baseline and the spread of each comparison."""

    directory: str
    baseline: str
    spreads: list[Spread]

    @property
    def largest(self) -> Spread | None:
        """The noisiest comparison: seeds enough for it are enough for every one."""
        return max(self.spreads, key=lambda s: s.sd, default=None)


def pilot_rows(directory: str | Path) -> tuple[list[dict[str, Any]], str]:
    """A finished ablation's rows and baseline: from its runs when they are there, else from its
    ``results.csv`` and ``summary.csv`` alone (a report committed without its runs)."""
    from .plan import PLAN_FILE, RUNS_DIR, load_plan_data
    from .results import RESULTS_CSV, collect_rows
    from .stats import SUMMARY_CSV

    directory = Path(directory)
    if (directory / PLAN_FILE).is_file() and (directory / RUNS_DIR).is_dir():
        return collect_rows(directory), str(load_plan_data(directory)["baseline"])
    results, summary = directory / RESULTS_CSV, directory / SUMMARY_CSV
    if not results.is_file() or not summary.is_file():
        raise ConfigError(f"--pilot {directory}: not an ablation directory (it has neither "
                          f"{PLAN_FILE} with {RUNS_DIR}/ nor {RESULTS_CSV} and {SUMMARY_CSV})")
    rows = [{**row, "seed_index": int(row["seed_index"]),
             "final_val_loss": float(row["final_val_loss"]) if row["final_val_loss"] else None}
            for row in _read_csv(results)]
    baselines = [row["variant"] for row in _read_csv(summary) if row["is_baseline"] == "True"]
    if len(baselines) != 1:
        raise ConfigError(f"--pilot {directory}: {SUMMARY_CSV} names no single baseline")
    return rows, baselines[0]


def _read_csv(path: Path) -> list[dict[str, str]]:
    import csv

    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def read_pilot(directory: str | Path) -> Pilot:
    """Each variant's spread against the pilot's baseline, paired over shared seeds when it can."""
    from .significance import pair_up
    from .stats import counted

    rows, baseline = pilot_rows(directory)
    by_seed: dict[str, dict[int, float]] = {}
    for row in counted(rows):
        by_seed.setdefault(row["variant"], {})[row["seed_index"]] = row["final_val_loss"]
    base = by_seed.get(baseline, {})
    spreads = []
    for variant, losses in by_seed.items():
        if variant == baseline:
            continue
        spread = spread_of(variant, pair_up(losses, base), list(losses.values()),
                           list(base.values()))
        if spread is not None:
            spreads.append(spread)
    if not spreads:
        raise ConfigError(f"--pilot {directory}: no variant has 2 completed seeds beside the "
                          f"baseline's ({baseline}), so no spread was measured; pilot with "
                          "--seeds 2 or more")
    return Pilot(str(directory), baseline, spreads)


@dataclass(frozen=True)
class PowerRow:
    """One comparison's answer: the seeds each wanted difference needs, and what the plan's detect."""

    variant: str
    sd: float
    paired: bool
    seeds: dict[float, int | None]     # delta -> seeds needed (None: more than 10,000)
    detectable: float | None           # the MDE of the planned seeds


def plan_power(pilot: Pilot, deltas: Sequence[float], planned_seeds: int, comparisons: int,
               ) -> tuple[float, list[PowerRow]]:
    """``(alpha, rows)``: every pilot comparison's seeds needed per delta, and its MDE with the
    planned seeds, at alpha = 0.05 / comparisons (what Holm asks of the smallest p-value)."""
    alpha = ALPHA / max(1, comparisons)
    rows = [PowerRow(s.variant, s.sd, s.paired,
                     {delta: seeds_needed(delta, s.sd, alpha) for delta in deltas},
                     detectable_effect(planned_seeds, s.sd, alpha))
            for s in pilot.spreads]
    return alpha, rows


def pilot_overrides(steps: int) -> list[str]:
    """``--set`` values that cut a plan to a pilot: ``steps`` steps, one evaluation at the end."""
    return [f"train.max_steps={steps}", "train.epochs=null", "train.max_tokens=null",
            f"train.eval_every={steps}", f"train.warmup_steps={steps // 10}"]


def run_pilot(source: str | Path, steps: int, directory: str | Path, *, seeds: int,
              jobs: int = 1, **plan_options: Any) -> Pilot:
    """Train the plan's variants for ``steps`` steps over ``seeds`` seeds (at least 2) into
    ``directory`` (resumable like any ablation) and read their spread.

    Short runs measure the seed noise of short runs: it is a guide to the full runs' noise, not
    the same thing; a finished ablation of the full budget is the better pilot.
    """
    from . import run_ablation
    from .plan import make_plan

    overrides = [*plan_options.pop("overrides", ()), *pilot_overrides(steps)]
    plan = make_plan(source, seeds=max(2, seeds), overrides=overrides, **plan_options)
    result = run_ablation(plan, directory, jobs=jobs)
    if result.failed:
        raise LlmbricksError(f"pilot: {len(result.failed)} of {len(result.rows)} runs did not "
                             f"complete (see {Path(directory) / 'report.md'})")
    return read_pilot(directory)
