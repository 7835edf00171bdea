"""Tests of a variant against the baseline: paired over seeds, corrected for many comparisons.

Every variant of an ablation trains with the same seeds, and a run's seed fixes its
initialisation and its data order. So run ``k`` of a variant and run ``k`` of the baseline differ
only in what the variant changes, and their losses are **paired**. With ``d_k = x_Vk - x_Bk``
over the ``n`` seeds both completed:

    mean d  = (1/n) sum d_k
    s_d     = sqrt( sum (d_k - mean d)^2 / (n - 1) )
    se      = s_d / sqrt(n)
    CI      = mean d -/+ t_{0.975, n-1} * se                      (paired t interval)
    p       = 2 * (1 - T_{n-1}(|mean d| / se))                     (paired t test)
    d_z     = mean d / s_d                                         (Cohen's effect size)

The seed-to-seed noise that both runs of a pair share cancels in ``d_k``, so the paired interval
is narrower than Welch's (which treats the two samples as unrelated) whenever the seed moves both
alike, which it does when the variant changes little. A percentile bootstrap of ``mean d``
(``scipy.stats.bootstrap``, 9,999 resamples, a fixed seed) is given beside it: it does not assume
the differences are normal, but with 3 seeds it can only take 10 distinct values, so read it as
a check, not a better interval.

A grid of m variants makes m comparisons with the baseline, and at 95% one in twenty would
"succeed" by chance. Holm's step-down adjustment keeps the chance of any false claim at 5%:
with the p-values sorted, p_(1) <= ... <= p_(m),

    p_holm_(i) = max_{j <= i} min(1, (m - j + 1) * p_(j))

Edge cases: fewer than 2 pairs give no interval and no p-value; differences with zero spread
(the variant moves every seed by exactly the same amount, e.g. a renamed config) give the
interval [mean d, mean d] and no p-value (the t statistic is 0/0 or infinite); p-values that are
missing take no part in Holm's adjustment.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 9_999
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class Paired:
    """The paired comparison of a variant with the baseline over their common seeds."""

    n: int                                  # seeds both completed
    diff: float                             # mean d
    low: float | None                       # the paired t interval
    high: float | None
    p: float | None                         # the paired t test's two-sided p-value
    effect: float | None                    # Cohen's d_z
    boot_low: float | None                  # the percentile bootstrap interval of mean d
    boot_high: float | None


def pair_up(variant: Mapping[int, float], baseline: Mapping[int, float]) -> list[float]:
    """``d_k = x_Vk - x_Bk`` for each seed both have, in seed order."""
    return [variant[k] - baseline[k] for k in sorted(variant.keys() & baseline.keys())]


def paired(diffs: Sequence[float], confidence: float = CONFIDENCE) -> Paired | None:
    """The paired t interval, test, effect size and bootstrap of ``diffs``; None for no pair."""
    n = len(diffs)
    if n == 0:
        return None
    mean = statistics.fmean(diffs)
    if n < 2:
        return Paired(n, mean, None, None, None, None, None, None)
    s_d = statistics.stdev(diffs)
    if s_d == 0.0:
        return Paired(n, mean, mean, mean, None, None, mean, mean)
    from scipy.stats import t

    se = s_d / math.sqrt(n)                                     # se = s_d / sqrt(n)
    half = float(t.ppf(0.5 + confidence / 2, n - 1)) * se       # t_{0.975, n-1} * se
    p = 2.0 * float(t.sf(abs(mean) / se, n - 1))                # 2 (1 - T(|t|))
    boot_low, boot_high = bootstrap_mean(diffs, confidence)
    return Paired(n, mean, mean - half, mean + half, p, mean / s_d, boot_low, boot_high)


def bootstrap_mean(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The percentile bootstrap interval of the mean of ``values`` (fixed seed: repeatable)."""
    import numpy as np
    from scipy.stats import bootstrap

    result = bootstrap((np.asarray(values, dtype=float),), np.mean, confidence_level=confidence,
                       n_resamples=BOOTSTRAP_RESAMPLES, method="percentile",
                       random_state=np.random.default_rng(BOOTSTRAP_SEED))
    interval = result.confidence_interval
    return float(interval.low), float(interval.high)


def welch_p(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Welch's two-sided p-value for mean(a) = mean(b); None with fewer than 2 on a side or
    no spread at all."""
    if len(a) < 2 or len(b) < 2 or (statistics.variance(a) == 0.0 and statistics.variance(b) == 0.0):
        return None
    from scipy.stats import ttest_ind

    return float(ttest_ind(a, b, equal_var=False).pvalue)


def holm(p_values: Mapping[str, float | None]) -> dict[str, float | None]:
    """Holm-Bonferroni adjusted p-values; a missing p-value stays missing and is not counted."""
    present = sorted(((p, name) for name, p in p_values.items() if p is not None))
    m = len(present)
    adjusted: dict[str, float | None] = {name: None for name in p_values}
    running = 0.0
    for j, (p, name) in enumerate(present):                     # j = 0 for the smallest p
        running = max(running, min(1.0, (m - j) * p))           # max_{i<=j} min(1, (m - i) p_(i))
        adjusted[name] = running
    return adjusted
