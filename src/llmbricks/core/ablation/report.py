"""The ablation report: two figures, a markdown page and the terminal table.

``build_report(ABL)`` rebuilds everything from the directory alone (``plan.json``, the records
and the run directories), so ``llmbricks ablate report ABL`` gives the same files as the run
that trained them, and a rebuild of an unchanged directory writes the same ``report.md``.

```
ABL/results.csv, results.json   one row per run (results.py)
ABL/summary.csv                 one row per variant, with the statistics (stats.py)
ABL/curves.png                  validation loss vs step: per variant, mean over seeds, min-max band
ABL/final.png                   final validation loss per variant: seeds, mean, +-1 std
ABL/forest.png                  each variant's difference from the baseline, 95% interval, sorted
ABL/report.md                   the plan, both tables, the failures and the figures
```
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from rich.table import Table

from ..errors import ConfigError
from ..store.atomic import atomic_file, write_atomic
from ..train.plots import save_figure_atomically
from .halving import halving_view, read_promotions
from .plan import load_plan_data, match_unit
from .results import CURVE_AXES, Curve, curves_from, finite, read_runs, write_results
from .significance import CONFIDENCE
from .stats import counted, sort_by_loss, summarize, write_summary

#: What changes from seed to seed, by the plan's ``vary``.
VARY_MEANS = {"all": "each seed changes the initialisation, the data order and dropout",
              "init": "the data order is the first seed's; the initialisation and dropout vary",
              "data": "the initialisation and dropout are the first seed's; the data order "
                      "varies"}

CURVES_PNG = "curves.png"
FINAL_PNG = "final.png"
FOREST_PNG = "forest.png"
REPORT_MD = "report.md"


# --- formatting ---------------------------------------------------------------------------------


def fmt(value: Any, digits: int = 4, signed: bool = False) -> str:
    """A loss-like number with fixed decimals (``-`` when null), so columns line up."""
    if not finite(value):
        return "-"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def fmt_count(n: Any) -> str:
    """``124.44M``-style parameter counts."""
    if not finite(n):
        return "-"
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{suffix}"
    return str(int(n))


def fmt_rate(value: Any) -> str:
    return f"{value:,.0f}" if finite(value) else "-"


def fmt_duration(seconds: Any) -> str:
    return str(timedelta(seconds=round(seconds))) if finite(seconds) and seconds >= 0 else "-"


def fmt_mean_std(s: dict[str, Any]) -> str:
    """``3.2100 ± 0.0120`` (the std left out when a single run was counted)."""
    if s["val_loss_std"] is None:
        return fmt(s["val_loss_mean"])
    return f"{fmt(s['val_loss_mean'])} ± {fmt(s['val_loss_std'])}"


def interval(s: dict[str, Any]) -> tuple[float, float] | None:
    """The 95% interval the verdict rests on: the paired one when seeds pair up, else Welch's."""
    if s.get("test") == "paired t":
        return s["ci_paired_low"], s["ci_paired_high"]
    if s["ci_low"] is None:
        return None
    return s["ci_low"], s["ci_high"]


def fmt_ci(s: dict[str, Any]) -> str:
    bounds = interval(s)
    if bounds is None:
        return "-"
    return f"[{fmt(bounds[0], signed=True)}, {fmt(bounds[1], signed=True)}]"


def fmt_p(value: Any) -> str:
    """A p-value: 3 significant digits, ``<0.001`` below that."""
    if not finite(value):
        return "-"
    return "<0.001" if value < 0.001 else f"{value:.3g}"


def shown_diff(s: dict[str, Any]) -> float | None:
    """The difference the interval is about: over the common seeds when paired, else of the
    two means (they differ when a seed of one side did not complete)."""
    return s["diff_paired"] if s.get("test") == "paired t" else s["diff"]


def fmt_diff(s: dict[str, Any]) -> str:
    return "-" if s["is_baseline"] else fmt(shown_diff(s), signed=True)


def verdict(s: dict[str, Any]) -> str:
    """``better``/``worse`` when the 95% interval excludes 0 (lower loss is better)."""
    if s["is_baseline"]:
        return "baseline"
    bounds = interval(s)
    if bounds is None:
        return "too few runs" if s["n"] else "no runs"
    if bounds[1] < 0:
        return "better"
    if bounds[0] > 0:
        return "worse"
    return "no clear difference"


def _at_rung(s: dict[str, Any]) -> str:
    """``, at rung 1 where it was pruned`` for a variant that successive halving stopped."""
    return f", at rung {s['rung'] + 1}, where it was pruned" if s.get("pruned") else ""


def sentence(s: dict[str, Any], baseline: str) -> str:
    """One plain sentence for a variant, e.g. ``rope is better than absolute by 0.0956 nats
    (95% CI [-0.1108, -0.0803], paired t over 3 seeds, Holm-adjusted p = 0.004).``"""
    name, word = s["variant"], verdict(s)
    if word in ("too few runs", "no runs"):
        return f"{name}: {word} to compare with {baseline}{_at_rung(s)}."
    over = (f"paired t over {s['n_pairs']} seeds" if s["test"] == "paired t"
            else f"Welch t over {s['n']} runs, unpaired")
    p_text = fmt_p(s["p_holm"])
    p = "" if s["p_holm"] is None else \
        f", Holm-adjusted p {p_text.replace('<', '< ') if p_text.startswith('<') else '= ' + p_text}"
    detail = f"95% CI {fmt_ci(s)}, {over}{p}"
    diff = shown_diff(s)
    if word == "no clear difference":
        return (f"{name} cannot be told apart from {baseline} ({fmt(diff, signed=True)} nats, "
                f"{detail}){_at_rung(s)}.")
    return f"{name} is {word} than {baseline} by {fmt(abs(diff))} nats ({detail}){_at_rung(s)}."


# --- figures ------------------------------------------------------------------------------------


def _colors(variants: Sequence[str]) -> dict[str, Any]:
    """One colour per variant, by plan position, the same in both figures."""
    from matplotlib import colormaps

    palette = colormaps["tab10"].colors
    return {v: palette[i % len(palette)] for i, v in enumerate(variants)}


def mean_band(runs: Sequence[Curve]) -> tuple[list[float], list[float], list[float], list[float]]:
    """``(x, mean, low, high)`` over a variant's seeds: the mean and its 95% interval,

        mean -/+ t_{0.975, n-1} * s / sqrt(n)       (s: the seeds' sample std at that x)

    which narrows as seeds are added, unlike a min-max band; one seed has no band (low = high).
    Seeds of one variant normally evaluate at the same x, and then this is a plain mean per
    point. Otherwise each seed's curve is linearly interpolated onto the union of their x,
    kept to the range every seed covers (no extrapolation): each point averages all the seeds.
    """
    import numpy as np
    from scipy.stats import t

    first = max(steps[0] for _, steps, _ in runs)
    last = min(steps[-1] for _, steps, _ in runs)
    grid = sorted({s for _, steps, _ in runs for s in steps if first <= s <= last})
    if not grid:
        return [], [], [], []
    values = np.array([np.interp(grid, steps, losses) for _, steps, losses in runs])
    mean, n = values.mean(axis=0), len(runs)
    half = (float(t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * values.std(axis=0, ddof=1) / np.sqrt(n)
            if n > 1 else np.zeros_like(mean))
    return grid, mean.tolist(), (mean - half).tolist(), (mean + half).tolist()


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


#: The x-axis label of each curve axis.
AXIS_LABELS = {"step": "step", "tokens": "tokens trained", "flops": "training FLOPs (6N + 12LHQT "
               "per token)", "seconds": "seconds since the run started (evaluations included)"}


def save_figure(fig: Any, path: Path, svg: bool = False) -> Path:
    """``path`` as a PNG, and beside it the same figure as an SVG when asked."""
    if svg:
        with atomic_file(path.with_suffix(".svg")) as handle:
            fig.savefig(handle, format="svg")
    return save_figure_atomically(fig, path)


def curves_png(abl_dir: str | Path, curves: dict[str, list[Curve]],
               baseline: str | None = None, x: str = "step", svg: bool = False) -> Path:
    """``ABL/curves.png``: validation loss against ``x`` (step, tokens, flops or seconds), one
    mean line per variant with the 95% interval of the mean over its seeds as a band."""
    fig = _figure(9, 5.5)
    ax = fig.add_subplot()
    colors = _colors(list(curves))
    drawn = 0
    for variant, runs in curves.items():
        if not runs:
            continue
        steps, mean, low, high = mean_band(runs)
        is_base = variant == baseline
        label = f"{variant}{' (baseline)' if is_base else ''}, {len(runs)} seed(s)"
        if not steps:  # seeds with disjoint step ranges: draw each one instead
            for _, xs, ys in runs:
                ax.plot(xs, ys, color=colors[variant], linewidth=1, alpha=0.7)
            ax.plot([], [], color=colors[variant], label=label)
        else:
            ax.plot(steps, mean, color=colors[variant], label=label, marker="o", markersize=3,
                    linewidth=2.5 if is_base else 1.5, linestyle="--" if is_base else "-")
            ax.fill_between(steps, low, high, color=colors[variant], alpha=0.2, linewidth=0)
        drawn += 1
    ax.set_xlabel(AXIS_LABELS[x])
    ax.set_ylabel("validation loss (cross-entropy, nats)")
    ax.set_title("validation loss: mean over seeds, band = 95% interval of the mean")
    ax.grid(True, alpha=0.3)
    if drawn:
        ax.legend(fontsize="small")
    else:
        ax.text(0.5, 0.5, "no completed run has evaluated yet", ha="center", va="center",
                transform=ax.transAxes)
    return save_figure(fig, Path(abl_dir) / CURVES_PNG, svg)


def forest_png(abl_dir: str | Path, summary: Sequence[dict[str, Any]], svg: bool = False) -> Path:
    """``ABL/forest.png``: each variant's difference from the baseline with its 95% interval
    (paired where seeds pair up), sorted, with 0 (no difference) as a dashed line."""
    rows = [s for s in summary if not s["is_baseline"] and s["diff"] is not None]
    rows.sort(key=lambda s: -shown_diff(s))
    colors = _colors([s["variant"] for s in summary])
    fig = _figure(9, max(3.0, 0.5 * len(rows) + 1.6))
    ax = fig.add_subplot()
    for y, s in enumerate(rows):  # the best (most negative) ends on top
        diff = shown_diff(s)
        bounds = interval(s)
        xerr = [[diff - bounds[0]], [bounds[1] - diff]] if bounds else None
        ax.errorbar([diff], [y], xerr=xerr, fmt="o", color=colors[s["variant"]], capsize=4,
                    markersize=6)
    ax.axvline(0.0, color="gray", linestyle="--", linewidth=1)
    ax.set_yticks(range(len(rows)), [f"{s['variant']}\n{s['test'] or 'no interval'}"
                                     for s in rows], fontsize="small")
    ax.set_ylim(-0.6, max(len(rows), 1) - 0.4)
    baseline = next((s["variant"] for s in summary if s["is_baseline"]), "baseline")
    ax.set_xlabel(f"final validation loss minus {baseline}'s (left of 0: better)")
    ax.set_title("difference from the baseline, 95% interval")
    ax.grid(True, axis="x", alpha=0.3)
    if not rows:
        ax.text(0.5, 0.5, "no variant to compare yet", ha="center", va="center",
                transform=ax.transAxes)
    return save_figure(fig, Path(abl_dir) / FOREST_PNG, svg)


def final_png(abl_dir: str | Path, summary: Sequence[dict[str, Any]],
              rows: Sequence[dict[str, Any]], svg: bool = False) -> Path:
    """``ABL/final.png``: each variant's final validation losses (dots, one per seed), their
    mean (diamond) and +-1 sample std; best on top; the baseline's mean as a dashed line."""
    order = sort_by_loss(summary)
    colors = _colors([s["variant"] for s in summary])
    fig = _figure(9, max(3.0, 0.55 * len(order) + 1.6))
    ax = fig.add_subplot()
    labels = []
    for y, s in enumerate(reversed(order)):  # y = 0 at the bottom: the best ends up on top
        variant, color = s["variant"], colors[s["variant"]]
        losses = [r["final_val_loss"] for r in counted([r for r in rows if r["variant"] == variant])]
        offsets = [(i - (len(losses) - 1) / 2) * 0.08 for i in range(len(losses))]
        ax.scatter(losses, [y + o for o in offsets], color=color, s=18, alpha=0.7, zorder=2)
        if s["val_loss_mean"] is not None:
            ax.errorbar([s["val_loss_mean"]], [y], xerr=[[s["val_loss_std"] or 0.0]] * 2,
                        fmt="D", color=color, markersize=7, capsize=4, zorder=3,
                        markeredgecolor="black" if s["is_baseline"] else color)
            if s["is_baseline"]:
                ax.axvline(s["val_loss_mean"], color="gray", linestyle="--", linewidth=1, zorder=1)
        failed = f", {s['failed']} not counted" if s["failed"] else ""
        base = " (baseline)" if s["is_baseline"] else ""
        labels.append(f"{variant}{base}\nn={s['n']}{failed}")
    ax.set_yticks(range(len(labels)), labels, fontsize="small")
    for tick, s in zip(ax.get_yticklabels(), reversed(order), strict=True):
        if s["is_baseline"]:
            tick.set_fontweight("bold")
    ax.set_ylim(-0.6, len(labels) - 0.4)
    ax.set_xlabel("final validation loss (lower is better)")
    ax.set_title("final validation loss per variant: seeds (dots), mean ± 1 std (diamond)")
    ax.grid(True, axis="x", alpha=0.3)
    return save_figure(fig, Path(abl_dir) / FINAL_PNG, svg)


# --- report.md ----------------------------------------------------------------------------------


def _line(text: str) -> str:
    """Text safe inside a markdown code span: one line, no backtick to end it early."""
    return " ".join(str(text).split()).replace("`", "'")


def _cell(text: str) -> str:
    """Text safe inside a markdown table cell (no ``|`` to break the columns)."""
    return _line(text).replace("|", "\\|")


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _table(header: Sequence[str], lines: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    align = ["---:" if i in right else "---" for i in range(len(header))]
    return ["| " + " | ".join(row) + " |" for row in (header, align, *lines)]


def plan_section(plan: dict[str, Any]) -> list[str]:
    created = plan.get("created_at")
    when = (datetime.fromtimestamp(created, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
            if finite(created) else "-")
    seeds = plan.get("seeds") or []
    out = ["## Plan", "",
           f"- config: `{_line(plan.get('config', '-'))}`",
           f"- command: `{_line(plan.get('command') or '-')}`",
           f"- created: {when}",
           f"- seeds: {', '.join(map(str, seeds)) or '-'} (run `seed-K` uses the K-th)",
           f"- vary: `{plan.get('vary', 'all')}` ({VARY_MEANS.get(plan.get('vary', 'all'), '')})",
           f"- baseline: `{plan.get('baseline')}`",
           *budget_lines(plan),
           f"- {len(plan.get('variants', []))} variants x {len(seeds)} seeds = "
           f"{len(plan.get('variants', [])) * len(seeds)} runs", ""]
    grid = plan.get("grid") or {}
    if grid:
        lines = [[f"`{path}`", ", ".join(f"`{_cell(_value(v))}`" for v in values)]
                 for path, values in grid.items()]
        out += [*_table(["grid path", "values"], lines, set()), ""]
    return out


UNIT_NAMES = {"steps": "steps", "tokens": "tokens", "flops": "FLOPs", "time": "training time"}


def budget_lines(plan: dict[str, Any]) -> list[str]:
    """The plan's budget unit (``--match``) and successive halving's rungs, for the plan section."""
    match = plan.get("match") or {}
    unit = UNIT_NAMES.get(match.get("unit", "steps"), "steps")
    budget = match.get("budget")
    amount = f" ({fmt_count(budget)} {unit} per run)" if finite(budget) else ""
    lines = [f"- budget: equal {unit} for every variant{amount}" if match.get("unit", "steps")
             != "steps" else "- budget: each variant's own steps (not matched)"]
    halving = plan.get("halving")
    if halving:
        ladders = "; ".join(f"`{v}` {', '.join(map(str, steps))}"
                            for v, steps in halving["steps"].items())
        rule = ("a variant goes on as soon as it ranks in the top half of those that finished "
                "its rung (asynchronous, ASHA; promotions in halving.json)"
                if halving.get("mode") == "async" else
                "after each but the last the worse half of the variants stop")
        lines.append(f"- successive halving: {halving['rungs']} rungs, {rule} (steps per rung: "
                     f"{ladders})")
    return lines


def summary_section(summary: Sequence[dict[str, Any]]) -> list[str]:
    halving = any(s.get("rung") is not None for s in summary)
    header = ["#", "variant", "final val loss (mean ± std)", "n", "not counted", "best val loss",
              "diff vs baseline", "95% CI of diff", "test", "p (Holm)", "verdict", "params",
              "tok/s", *(["rung"] if halving else [])]
    lines = []
    for rank, s in enumerate(sort_by_loss(summary), 1):
        name = f"**{s['variant']}** (baseline)" if s["is_baseline"] else s["variant"]
        rung = [f"{s['rung'] + 1}" + (" (pruned)" if s["pruned"] else "")] if halving else []
        lines.append([str(rank), name, fmt_mean_std(s), str(s["n"]), str(s["failed"]),
                      fmt(s["best_val_loss_mean"]), fmt_diff(s), fmt_ci(s), s["test"] or "-",
                      fmt_p(s["p_holm"]), verdict(s), fmt_count(s["params"]),
                      fmt_rate(s["tokens_per_s"]), *rung])
    pruned = ("With successive halving, a pruned variant's loss is its loss at the rung where "
              "it stopped, compared with the baseline's at that same step (the rung column); "
              "sorting mixes rungs, so compare each with the baseline, not with each other. "
              if halving else "")
    baseline = next((s["variant"] for s in summary if s["is_baseline"]), "the baseline")
    sentences = [f"- {sentence(s, baseline)}" for s in sort_by_loss(summary) if not s["is_baseline"]]
    return ["## Summary", "",
            "Sorted by mean final validation loss (the last evaluation's; lower is better). "
            "n counts the completed runs with a finite loss. When the variant and the baseline "
            "completed at least 2 common seeds (an ablation's shared seeds), diff is the mean "
            "over those seeds of the variant's loss minus the baseline's, with its paired 95% "
            "confidence interval (a t interval over the per-seed differences); else diff is the "
            "variant's mean minus the baseline's, with Welch's interval over the two samples. "
            "An interval below 0 means better than the baseline beyond the seed-to-seed noise, "
            "above 0 worse. p (Holm) is the test's p-value adjusted for the number of variants "
            "compared (Holm-Bonferroni). summary.csv also holds the Welch and bootstrap intervals. "
            + pruned,
            "", *_table(header, lines, {0, 2, 3, 4, 5, 6, 9, 11, 12}), "", *sentences, ""]


def runs_section(abl_dir: Path, rows: Sequence[dict[str, Any]]) -> list[str]:
    header = ["variant", "seed", "status", "final val loss", "best val loss", "train loss",
              "steps", "tok/s", "wall", "run"]
    lines = []
    for r in rows:
        run = (f"[{r['run_dir']}]({r['run_dir']}/)" if (abl_dir / r["run_dir"]).is_dir()
               else "-")
        lines.append([r["variant"], f"{r['seed']} (seed-{r['seed_index']})", r["status"],
                      fmt(r["final_val_loss"]), fmt(r["best_val_loss"]), fmt(r["train_loss"]),
                      "-" if r["steps"] is None else str(r["steps"]), fmt_rate(r["tokens_per_s"]),
                      fmt_duration(r["wall_s"]), run])
    return ["## Runs", "", *_table(header, lines, {3, 4, 5, 6, 7, 8}), ""]


def _problem(row: dict[str, Any]) -> str | None:
    """Why a run is not counted, or None when it is."""
    if row["status"] == "completed":
        return None if finite(row["final_val_loss"]) else "completed without a finite val loss"
    if row["status"] == "missing":
        return "never ran"
    if row["error"]:
        return f"{row['status']}: `{_line(row['error'])}`"
    if row["status"] == "interrupted":
        return "interrupted (run the same command again to resume it)"
    return row["status"]


def failures_section(abl_dir: Path, rows: Sequence[dict[str, Any]]) -> list[str]:
    out = ["## Failures", ""]
    for row in rows:
        problem = _problem(row)
        if problem is None:
            continue
        log = f"{row['run_dir']}.log"
        link = f" ([log]({log}))" if (abl_dir / log).is_file() else ""
        out.append(f"- `{row['variant']}` seed-{row['seed_index']} (seed {row['seed']}): "
                   f"{problem}{link}")
    if len(out) == 2:
        out.append("Every run completed.")
    return [*out, ""]


def report_md(abl_dir: str | Path, plan: dict[str, Any], summary: Sequence[dict[str, Any]],
              rows: Sequence[dict[str, Any]]) -> Path:
    """``ABL/report.md``. Holds nothing that changes between rebuilds (no build time)."""
    abl_dir = Path(abl_dir)
    unit = match_unit(plan)  # the header says what the budgets were made equal in
    budget = "steps" if unit == "steps" else f"equal {UNIT_NAMES.get(unit, unit)}"
    lines = [f"# Ablation: {_line(plan.get('config', abl_dir.name))} (budget: {budget})", "",
             *plan_section(plan), *summary_section(summary),
             "## Figures", "",
             f"![validation loss, mean over seeds with the 95% interval of the mean]({CURVES_PNG})", "",
             f"![difference from the baseline per variant, with its 95% interval]({FOREST_PNG})",
             "",
             f"![final validation loss per variant: seeds, mean and std]({FINAL_PNG})", "",
             *runs_section(abl_dir, rows), *failures_section(abl_dir, rows),
             "Files: [results.csv](results.csv) (one row per run), [summary.csv](summary.csv) "
             "(one row per variant), [plan.json](plan.json)."]
    return write_atomic(abl_dir / REPORT_MD, "\n".join(lines) + "\n")


# --- terminal -----------------------------------------------------------------------------------


def rich_table(summary: Sequence[dict[str, Any]]) -> Table:
    """The summary for the terminal, best first; ``*`` marks the baseline."""
    table = Table(title="final validation loss (lower is better)",
                  caption="* baseline; diff = mean - baseline mean; 95% CI paired over seeds "
                  "(Welch's when seeds do not pair); p Holm-adjusted")
    for name in ("variant", "val loss (mean ± std)", "n", "diff", "95% CI", "p", "params",
                 "tok/s"):
        # The variant's name is what the reader looks for: never cut or folded.
        table.add_column(name, justify="left" if name == "variant" else "right",
                         no_wrap=name == "variant")
    for s in sort_by_loss(summary):
        style = {"better": "green", "worse": "red"}.get(verdict(s), "")
        n = str(s["n"]) + (f" (+{s['failed']} not counted)" if s["failed"] else "")
        name = f"{s['variant']} *" if s["is_baseline"] else s["variant"]
        if s.get("pruned"):
            name += f" (pruned, rung {s['rung'] + 1})"
        table.add_row(name, fmt_mean_std(s),
                      n, fmt_diff(s), fmt_ci(s), fmt_p(s["p_holm"]), fmt_count(s["params"]),
                      fmt_rate(s["tokens_per_s"]), style=style or ("bold" if s["is_baseline"]
                                                                    else None))
    return table


# --- all of it ----------------------------------------------------------------------------------


#: The curve axis that shows the budget a plan matched (``--match``).
AXIS_OF_UNIT = {"steps": "step", "tokens": "tokens", "flops": "flops", "time": "seconds"}


def build_report(abl_dir: str | Path, *, x: str | None = None, svg: bool = False
                 ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Read ABL, write every report file; return ``(summary, rows)``.

    ``x``: what the curves are drawn against (step, tokens, flops, seconds; default the unit
    the budgets were matched in). ``svg``: each figure also as an SVG. With successive halving,
    each variant's statistics are those of the last rung it reached (``halving.halving_view``).
    Raises ``ConfigError`` when ABL holds no ``plan.json``.
    """
    abl_dir = Path(abl_dir)
    plan = load_plan_data(abl_dir)
    x = x or AXIS_OF_UNIT.get(match_unit(plan), "step")
    if x not in CURVE_AXES:
        raise ConfigError(f"--x {x}: choose one of {', '.join(CURVE_AXES)}")
    runs = read_runs(abl_dir, plan)
    baseline = plan.get("baseline", "")
    if plan.get("halving"):
        _, summary, rows = halving_view(plan["halving"], baseline,
                                        [v["name"] for v in plan.get("variants", [])], runs,
                                        promoted=read_promotions(abl_dir))  # --asha's
        runs = [(row, events) for row, (_, events) in zip(rows, runs, strict=True)]
    else:
        rows = [row for row, _ in runs]
        summary = summarize(rows, baseline)
    flops = (plan.get("match") or {}).get("flops_per_token")
    if x == "flops" and (not flops or any(v is None for v in flops.values())):
        raise ConfigError(f"--x flops: {abl_dir / 'plan.json'} records no FLOPs per token for "
                          "every variant (planned before FLOPs were counted, or without the data "
                          "its tokenizer needs); draw against step or tokens")
    write_results(abl_dir, rows)
    write_summary(abl_dir, summary)
    curves_png(abl_dir, curves_from(runs, x, flops), plan.get("baseline"), x, svg)
    final_png(abl_dir, summary, rows, svg)
    forest_png(abl_dir, summary, svg)
    report_md(abl_dir, plan, summary, rows)
    return summary, rows
