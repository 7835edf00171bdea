"""``llmbricks ablate``: train a grid of variants over seeds and report how they compare."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import click

from llmbricks.cli.options import console, set_option


class _RunByDefault(click.Group):
    """``ablate CONFIG ...`` means ``ablate run CONFIG ...``; ``ablate report DIR`` reports."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_RunByDefault)
def ablate() -> None:
    """Compare variants of a config over seeds: `llmbricks ablate CONFIG --grid PATH=V1,V2`.

    Each variant x seed is a normal run under OUT/runs/VARIANT/seed-K/; the report (results.csv,
    summary.csv, report.md, curves.png, final.png, forest.png) goes to OUT. Running the same
    command again skips finished runs and resumes interrupted ones.
    """


@ablate.command("run")
@click.argument("config_file", metavar="CONFIG", type=click.Path(exists=True, dir_okay=False))
@click.option("--grid", "grids", multiple=True, metavar="PATH=V1,V2,...",
              help="Values to try for one config field (parsed like --set values); several "
                   "--grid multiply. Replaces the config's ablation.grid for that path.")
@click.option("--seeds", type=click.IntRange(min=1), help="Runs per variant (seed, seed+1, ...).")
@click.option("--vary", type=click.Choice(["all", "init", "data"]), help="What changes from "
              "seed to seed: all (default), init (one data order), data (one initialisation).")
@click.option("--match", type=click.Choice(["steps", "tokens", "flops", "time"]),
              metavar="UNIT", help="Give every variant the baseline's budget in UNIT: steps "
              "(default: each keeps its own), tokens, flops (6N + 12LHQT per token) or time "
              "(timed steps); each trains budget / its cost per step.")
@click.option("--halving", is_flag=True, help="Successive halving: train every variant to a "
              "fraction of its budget, stop the worse half, go on with the rest (rungs at 1/2^k "
              "of the budget, down to the baseline and the best other).")
@click.option("--asha", is_flag=True, help="Successive halving that promotes without waiting "
              "for the rung (ASHA): a variant goes on as soon as it ranks in the top half of "
              "those that finished the rung; faster with --jobs > 1, decisions depend on "
              "finishing order (recorded in halving.json).")
@click.option("--baseline", help="The variant the others are compared with (name or value; "
                                 "default: the config's, else the first).")
@click.option("--jobs", "-j", default=1, show_default=True, type=click.IntRange(min=1),
              help="Runs at a time; each gets cores / jobs torch threads.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="ray: run on a Ray cluster (pip install 'llmbricks[ray]').")
@click.option("--address", help="Ray cluster address (e.g. ray://host:10001 or auto); default: "
                                "a local Ray instance.")
@click.option("--out", type=click.Path(file_okay=False), help="The ablation directory "
              "(default ablations/NAME, NAME from the config's file name).")
@set_option
@click.option("--dry-run", is_flag=True, help="Validate every variant and print the plan with "
              "parameter counts and estimated times; train nothing.")
@click.option("--detect", "deltas", multiple=True, type=click.FloatRange(min=0, min_open=True),
              metavar="DELTA", help="With --dry-run: the seeds each comparison needs to detect a "
              "loss difference of DELTA with 80%% power (repeatable), and the smallest difference "
              "the planned seeds detect. Needs a pilot's spread (--pilot).")
@click.option("--pilot", metavar="DIR|STEPS", help="Where --detect gets the seed-to-seed spread: "
              "a finished ablation directory, or STEPS to train the variants that long first "
              "(into OUT-pilot). Default: OUT, when it holds finished runs.")
def run(config_file: str, grids: tuple[str, ...], seeds: int | None, vary: str | None,
        match: str | None, halving: bool, asha: bool, baseline: str | None, jobs: int,
        executor: str, address: str | None, out: str | None,
        overrides: tuple[str, ...], dry_run: bool, deltas: tuple[float, ...],
        pilot: str | None) -> None:
    """Train every variant of CONFIG's grid over seeds, then write and print the report."""
    from llmbricks.core.ablation import make_plan

    command = shlex.join(["llmbricks", "ablate", *sys.argv[2:]]) if sys.argv[1:2] == ["ablate"] \
        else ""
    if (deltas or pilot) and not dry_run:
        raise click.UsageError("--detect and --pilot plan seeds before spending them: add --dry-run")
    if pilot and not deltas:
        raise click.UsageError("--pilot measures the spread for --detect: add --detect DELTA")
    directory = Path(out) if out else Path("ablations") / Path(config_file).stem
    plan = make_plan(config_file, grid=grids, seeds=seeds, baseline=baseline,
                     overrides=overrides, command=command, vary=vary, match=match,
                     directory=directory, jobs=jobs, halving=halving, asha=asha)
    if dry_run:
        _print_plan(plan, directory, jobs)
        if deltas:
            _print_power(plan, directory, deltas, pilot, jobs, config_file=config_file,
                         grid=grids, baseline=baseline, overrides=overrides, vary=vary)
        return
    _run(plan, directory, executor, jobs, address)


def _print_plan(plan: Any, directory: Path, jobs: int) -> None:
    from rich.table import Table

    from llmbricks.core.ablation.estimate import estimate_plan
    from llmbricks.core.flops import format_flops

    estimate = estimate_plan(plan, jobs)
    out = console()
    table = Table(title=f"{len(plan.variants)} variants x {len(plan.seeds)} seeds -> {directory}")
    for column, justify in (("variant", "left"), ("changes", "left"), ("params", "right"),
                            ("FLOPs/token", "right"), ("memory", "right"), ("s/step", "right"),
                            ("steps", "right"), ("est. per run", "right")):
        table.add_column(column, justify=justify,  # type: ignore[arg-type]
                         no_wrap=column == "variant")
    flops = (plan.match or {}).get("flops_per_token", {})
    for variant, guess in zip(plan.variants, estimate.variants, strict=True):
        changes = ", ".join(f"{k}={v}" for k, v in variant.overrides.items()) or "(none)"
        name = variant.name + (" *" if variant.name == plan.baseline else "")
        table.add_row(name, changes, f"{guess.params:,}",
                      "?" if flops.get(variant.name) is None else format_flops(flops[variant.name]),
                      _memory_cell(guess),
                      "-" if guess.step_s is None else f"{guess.step_s:.3f}",
                      "?" if guess.steps is None else f"{guess.steps:,}",
                      "?" if guess.run_s is None else _duration(guess.run_s))
    out.print(table)
    if plan.match_unit != "steps":
        out.print(_match_line(plan))
    if plan.halving:
        from llmbricks.core.ablation.rungs import halving_share

        mode = "asynchronous " if plan.halving.get("mode") == "async" else ""
        ladder = plan.halving["steps"][plan.baseline]
        out.print(f"{mode}successive halving: {plan.halving['rungs']} rungs (the baseline's at "
                  f"steps {', '.join(f'{s:,}' for s in ladder)}); the worse half stops after each, "
                  f"so at most {halving_share(plan.halving):.0%} of the grid's steps train"
                  + (" (ASHA may promote more)" if mode else ""))
    note = " (plus variants whose budget is in epochs)" if estimate.unknown else ""
    varying = "" if plan.vary == "all" else f" (varying only the {plan.vary} seed)"
    out.print(f"* baseline. seeds: {', '.join(map(str, plan.seeds))}{varying}; "
              f"{len(plan.jobs())} runs, {jobs} at a time with {estimate.threads} thread(s) each")
    too_big = [plan.variants[i].name for i in estimate.too_big]
    valid = "Every variant is valid" if not too_big else \
        f"{len(plan.variants) - len(too_big)} of {len(plan.variants)} variants fit"
    if plan.halving:
        from llmbricks.core.ablation.rungs import halving_share

        halved = estimate.total_s * halving_share(plan.halving)
        note += f" for the whole grid; at most {_duration(halved)} with halving"
    out.print(f"estimated training time: {_duration(estimate.total_s)}{note}; evaluations and "
              f"checkpoints come on top. {valid}; nothing was trained.")
    if too_big:
        _refuse_too_big(too_big, estimate.memory_room, jobs)


def _match_line(plan: Any) -> str:
    """The budget every variant gets under --match, as the baseline's steps make it."""
    from llmbricks.core.flops import format_flops

    match, base = plan.match, plan.baseline
    steps, tokens = match["baseline_steps"], match["tokens_per_step"][base]
    unit = match["unit"]
    if unit == "tokens":
        budget, how = f"{match['budget']:,} tokens", f"{steps:,} steps x {tokens:,} tokens"
    elif unit == "flops":
        budget = f"{format_flops(match['budget'])} FLOPs"
        how = (f"{steps:,} steps x {tokens:,} tokens x "
               f"{format_flops(match['flops_per_token'][base])} FLOPs/token")
    else:
        budget = f"{_duration(match['budget'])} of training"
        how = f"{steps:,} steps x {match['step_s'][base]:.3f} s/step, timed"
    return f"--match {unit}: {budget} each (baseline: {how})"


def _print_power(plan: Any, directory: Path, deltas: tuple[float, ...], pilot: str | None,
                 jobs: int, *, config_file: str, **plan_options: Any) -> None:
    """The power table: seeds each comparison needs per DELTA, and the planned seeds' MDE."""
    from rich.table import Table

    from llmbricks.core.ablation.power import POWER, plan_power, read_pilot, run_pilot

    if pilot is not None and pilot.isdigit():
        steps = int(pilot)
        if steps < 1:
            raise click.BadParameter("give at least 1 step, or a directory", param_hint="--pilot")
        where = directory.with_name(f"{directory.name}-pilot")  # beside OUT, which stays free
        click.echo(f"pilot: {len(plan.variants)} variants x {max(2, len(plan.seeds))} seeds of "
                   f"{steps} steps into {where}")
        measured = run_pilot(config_file, steps, where, seeds=len(plan.seeds), jobs=jobs,
                             **plan_options)
    else:
        source = Path(pilot) if pilot is not None else directory
        if pilot is None and not (source / "results.csv").is_file():
            raise click.UsageError(f"--detect needs a pilot's spread and {source} holds no "
                                   "finished ablation: give --pilot DIR (a finished ablation) "
                                   "or --pilot STEPS (short runs first)")
        measured = read_pilot(source)
    comparisons = len(plan.variants) - 1
    alpha, rows = plan_power(measured, deltas, len(plan.seeds), comparisons)
    table = Table(title=f"seeds for {POWER:.0%} power at alpha {alpha:.3g} (0.05 / {max(1, comparisons)} "
                        f"comparison{'s' if comparisons != 1 else ''}), spread from "
                        f"{measured.directory}")
    table.add_column("comparison (pilot)", no_wrap=True)
    table.add_column("spread s_d", justify="right")
    for delta in deltas:
        table.add_column(f"seeds for {delta:g}", justify="right")
    table.add_column(f"MDE, {len(plan.seeds)} seeds", justify="right")
    for row in rows:
        table.add_row(f"{row.variant} - {measured.baseline}",
                      f"{row.sd:.4f}" + ("" if row.paired else " (unpaired)"),
                      *[">10,000" if row.seeds[d] is None else str(row.seeds[d]) for d in deltas],
                      "-" if row.detectable is None else f"{row.detectable:.4f}")
    console().print(table)
    for delta in deltas:
        needs = [row.seeds[delta] for row in rows]
        most = "more than 10,000" if None in needs else str(max(n for n in needs if n is not None))
        click.echo(f"to detect {delta:g} in every comparison: {most} seeds (planned: "
                   f"{len(plan.seeds)})")


def _memory_cell(guess: Any) -> str:
    """A run's estimated training memory in GiB, ``!`` when it would not fit."""
    from llmbricks.core.train.memory import gib

    if guess.memory is None:
        return "?"
    return f"{gib(guess.memory.total)} GiB" + (" !" if guess.fits is False else "")


def _refuse_too_big(names: list[str], room: int | None, jobs: int) -> None:
    """Variants that `train` would refuse: exit 2 in one line (a note when the check is off)."""
    import os

    from llmbricks.core.errors import ConfigError
    from llmbricks.core.train.memory import SKIP_ENV, gib

    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    share = f"{gib(room or 0)} GiB per run" + (f" ({jobs} at a time)" if jobs > 1 else "")
    if os.environ.get(SKIP_ENV, "").strip() not in ("", "0"):
        click.echo(f"note: {shown} would not fit in {share}; {SKIP_ENV} is set, so they will "
                   "train anyway", err=True)
        return
    fewer = "fewer --jobs, " if jobs > 1 else ""
    raise ConfigError(f"{len(names)} variant{'s' if len(names) != 1 else ''} would not fit in "
                      f"memory ({shown}: more than {share}, marked ! above); use {fewer}a smaller "
                      f"train.batch_size or model.context_length, or set {SKIP_ENV}=1")


def _run(plan: Any, directory: Path, executor: str, jobs: int, address: str | None) -> None:
    from llmbricks.core.ablation import run_ablation
    from llmbricks.core.ablation.report import rich_table

    total = len(plan.jobs())
    finished, to_train = [0], [total]

    def on_start(todo: list[Any], done: list[Any]) -> None:
        to_train[0] = len(todo)
        skipped = f", {len(done)} already done" if done else ""
        mode = " (asynchronous)" if plan.halving and plan.halving.get("mode") == "async" else ""
        halving = f"; successive halving over {plan.halving['rungs']} rungs{mode}, at most" \
            if plan.halving else ""
        click.echo(f"ablation {directory}: {total} runs ({len(plan.variants)} variants x "
                   f"{len(plan.seeds)} seeds){halving} {len(todo)} to train{skipped}; "
                   f"{jobs} at a time")

    def on_done(job: Any, record: dict[str, Any]) -> None:
        finished[0] += 1
        tail = f": {record['error']}" if record.get("error") else ""
        count = f"[{finished[0]}]" if plan.halving else f"[{finished[0]}/{to_train[0]}]"
        status = f"paused at rung {record['rung'] + 1}" if record["status"] == "paused" \
            else record["status"]
        click.echo(f"{count} {job.variant} seed-{job.seed_index} {status} in "
                   f"{_duration(record['wall_s'])}{tail}")

    result = run_ablation(plan, directory, executor=executor, jobs=jobs, address=address,
                          on_start=on_start, on_done=on_done)
    console().print(rich_table(result.summary))
    click.echo(f"report: {directory / 'report.md'} (curves.png, final.png, forest.png, "
               "results.csv, summary.csv)")
    if result.failed:
        click.echo(f"error: {len(result.failed)} of {total} runs did not complete (see the "
                   "report); run the same command again to retry them", err=True)
        sys.exit(1)


@ablate.command("report")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--x", "x", type=click.Choice(["step", "tokens", "flops", "seconds"]),
              help="What curves.png is drawn against (default: the unit the budgets were "
                   "matched in, else step).")
@click.option("--svg", is_flag=True, help="Also save each figure as an SVG beside its PNG.")
def report(directory: str, x: str | None, svg: bool) -> None:
    """Rebuild DIRECTORY's report from its run directories alone, and print the table."""
    from llmbricks.core.ablation.report import build_report, rich_table

    summary, _rows = build_report(directory, x=x, svg=svg)
    console().print(rich_table(summary))
    click.echo(f"report: {Path(directory) / 'report.md'}")


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f}s"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
