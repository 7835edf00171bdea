"""Per-variant statistics over seeds, and each variant's difference from the baseline.

Each run gives one number, its final validation loss (the last evaluation's). For a variant with
losses x_1..x_n over n completed runs:

    mean  = (1/n) * sum(x_i)
    std   = sqrt( sum((x_i - mean)^2) / (n - 1) )          sample std (ddof=1); null when n < 2

The difference from the baseline (B) and its 95% confidence interval come from Welch's t
interval, which does not assume the two variants vary equally across seeds:

    diff  = mean_V - mean_B
    se    = sqrt( s_V^2/n_V + s_B^2/n_B )
    df    = se^4 / ( (s_V^2/n_V)^2/(n_V - 1) + (s_B^2/n_B)^2/(n_B - 1) )    (Welch-Satterthwaite)
    CI    = diff -/+ t_{0.975, df} * se

An interval that excludes 0 says the difference is larger than the seed-to-seed noise measured;
one that contains 0 says these seeds cannot tell the two apart. Edge cases:

- either side has n < 2: no spread is measured, so there is no interval (null);
- both sides have zero spread (se = 0, e.g. runs the seed does not change): df is 0/0, and the
  interval is the limit of Welch's as the spreads shrink, [diff, diff]. It says no seed noise
  was observed, which with few seeds is weak evidence: add seeds to trust it;
- the baseline row itself has diff 0 and no interval; with no completed baseline run, no
  variant has a diff.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..store.atomic import write_atomic
from .results import csv_text, finite
from .significance import CONFIDENCE, Paired, holm, pair_up, paired, welch_p

SUMMARY_CSV = "summary.csv"

#: The columns of ``summary.csv``, in order (also the keys of each summary row).
SUMMARY_FIELDS = ("variant", "is_baseline", "n", "failed", "val_loss_mean", "val_loss_std",
                  "best_val_loss_mean", "diff", "ci_low", "ci_high", "df", "p_welch",
                  "n_pairs", "diff_paired", "ci_paired_low", "ci_paired_high", "ci_boot_low",
                  "ci_boot_high", "effect_size", "test", "p", "p_holm", "params", "tokens_per_s",
                  "rung", "pruned")


def counted(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs a variant's statistics use: completed, with a finite final validation loss."""
    return [r for r in rows if r.get("status") == "completed" and finite(r.get("final_val_loss"))]


def mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    """``(mean, sample std)``; std is null for fewer than two values (no spread measured)."""
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def welch_interval(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE
                   ) -> tuple[float, float, float | None] | None:
    """The Welch interval of mean(a) - mean(b): ``(low, high, df)``, or None when n < 2.

    df is None when both samples have zero spread (the interval is then [diff, diff]).
    """
    if len(a) < 2 or len(b) < 2:
        return None
    from scipy.stats import t

    diff = statistics.fmean(a) - statistics.fmean(b)
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)  # s^2 / n
    se = math.sqrt(va + vb)                                       # se = sqrt(s_a^2/n_a + s_b^2/n_b)
    if se == 0.0:
        return diff, diff, None
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))   # Welch-Satterthwaite
    half = float(t.ppf(0.5 + confidence / 2, df)) * se            # t_{0.975, df} * se
    return diff - half, diff + half, df


def _common(values: Sequence[Any]) -> Any:
    """The most frequent non-null value (every seed of a variant builds the same model)."""
    present = [v for v in values if finite(v)]
    return Counter(present).most_common(1)[0][0] if present else None


def _variant_order(rows: Sequence[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(r["variant"] for r in rows))


def summarize(rows: Sequence[dict[str, Any]], baseline: str) -> list[dict[str, Any]]:
    """One row per variant, in the order the rows list them (plan order).

    ``n`` counts the completed runs with a final validation loss; ``failed`` counts the other
    runs (failed, interrupted, missing, or completed with a nan loss), so n + failed = seeds.
    """
    by_variant: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_variant.setdefault(row["variant"], []).append(row)
    losses = {v: [r["final_val_loss"] for r in counted(rs)] for v, rs in by_variant.items()}
    # Run k of every variant trained with the k-th seed: the pairs.
    by_seed = {v: {r["seed_index"]: r["final_val_loss"] for r in counted(rs)}
               for v, rs in by_variant.items()}
    base = losses.get(baseline, [])
    summary = []
    for variant in _variant_order(rows):
        runs, mine = by_variant[variant], losses[variant]
        used = counted(runs)
        mean, std = mean_std(mine)
        best = [r["best_val_loss"] for r in used if finite(r.get("best_val_loss"))]
        speeds = [r["tokens_per_s"] for r in used if finite(r.get("tokens_per_s"))]
        is_base = variant == baseline
        diff = (mean - statistics.fmean(base)) if mine and base and not is_base else None
        interval = None if is_base else welch_interval(mine, base)
        summary.append({
            "variant": variant,
            "is_baseline": is_base,
            "n": len(mine),
            "failed": len(runs) - len(mine),
            "val_loss_mean": mean,
            "val_loss_std": std,
            "best_val_loss_mean": statistics.fmean(best) if best else None,
            "diff": 0.0 if is_base and mine else diff,
            "ci_low": interval[0] if interval else None,
            "ci_high": interval[1] if interval else None,
            "df": interval[2] if interval else None,
            "p_welch": None if is_base else welch_p(mine, base),
            "params": _common([r.get("params") for r in runs]),
            "tokens_per_s": statistics.fmean(speeds) if speeds else None,
        })
        pairs = None if is_base else paired(pair_up(by_seed[variant], by_seed.get(baseline, {})))
        summary[-1].update(_paired_columns(pairs))
        # The test the verdict rests on: paired when 2 seeds pair up, else Welch's.
        if pairs is not None and pairs.low is not None:
            summary[-1].update(test="paired t", p=pairs.p)
        else:
            summary[-1].update(test="Welch t" if interval else None, p=summary[-1]["p_welch"])
    adjusted = holm({s["variant"]: s["p"] for s in summary if not s["is_baseline"]})
    for row in summary:
        row["p_holm"] = adjusted.get(row["variant"])
    return summary


def _paired_columns(result: Paired | None) -> dict[str, Any]:
    if result is None:
        return {"n_pairs": 0, "diff_paired": None, "ci_paired_low": None, "ci_paired_high": None,
                "ci_boot_low": None, "ci_boot_high": None, "effect_size": None}
    return {"n_pairs": result.n, "diff_paired": result.diff, "ci_paired_low": result.low,
            "ci_paired_high": result.high, "ci_boot_low": result.boot_low,
            "ci_boot_high": result.boot_high, "effect_size": result.effect}


def sort_by_loss(summary: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Best (lowest mean validation loss) first; variants without a loss last, in plan order."""
    return sorted(summary, key=lambda s: (s["val_loss_mean"] is None, s["val_loss_mean"] or 0.0))


def write_summary(abl_dir: str | Path, summary: Sequence[dict[str, Any]]) -> Path:
    """``ABL/summary.csv``: one line per variant, in plan order."""
    return write_atomic(Path(abl_dir) / SUMMARY_CSV, csv_text(summary, SUMMARY_FIELDS))
