"""``llmbricks schedule plot CONFIG``: the learning-rate curve a run would follow."""

from __future__ import annotations

import click

from llmbricks.cli.options import command_with_config, load


@click.group()
def schedule() -> None:
    """Look at a config's learning-rate schedule."""


@schedule.command("plot")
@command_with_config
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Steps to draw (default: train.max_steps; needed when the budget is in epochs "
              "or tokens).")
@click.option("--out", "-o", default="lr.png", show_default=True, type=click.Path(dir_okay=False),
              help="The PNG to write.")
def plot(config_file: str, overrides: tuple[str, ...], steps: int | None, out: str) -> None:
    """Write a PNG of CONFIG's learning rate per step, and print its landmarks."""
    from llmbricks.core.train.optim import schedule_curve
    from llmbricks.core.train.plots import plot_schedule

    config = load(config_file, overrides)
    train = config.train
    rates = schedule_curve(train, steps)
    spec = train.schedule
    shown = ", ".join(f"{k} {v}" for k, v in spec.params.items())
    title = f"{spec.name}{f' ({shown})' if shown else ''}: lr {train.lr:g}, warmup {train.warmup_steps}"
    plot_schedule(rates, out, title)
    last = len(rates) - 1
    marks = sorted({0, min(train.warmup_steps, last), last // 2, last})
    click.echo(f"{title}, {len(rates)} steps -> {out}")
    click.echo("  ".join(f"step {s}: {rates[s]:.3g}" for s in marks))
