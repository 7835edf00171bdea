"""``llmbricks train``: train a config into a run directory, or resume one."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from llmbricks.cli.options import set_option


@click.command()
@click.argument("config_file", metavar="CONFIG", type=click.Path(exists=True, path_type=str))
@set_option
@click.option("--out", type=click.Path(file_okay=False), help="The run directory "
              "(default runs/NAME, NAME from the config's `name` or file name; runs/NAME-2... "
              "when taken).")
@click.option("--resume", is_flag=True, help="Continue the run in --out (default: the newest "
              "runs/NAME*) from its last complete checkpoint.")
@click.option("--overwrite", is_flag=True, help="Start the run in --out over: its checkpoints "
              "and metrics are deleted (only a run directory is ever replaced).")
@click.option("--pause-at", type=click.IntRange(min=1), metavar="STEP", help="Stop at STEP with "
              "an evaluation and a checkpoint, the schedule still counting the whole budget; "
              "--resume continues (successive halving's rungs).")
def train(config_file: str, overrides: tuple[str, ...], out: str | None, resume: bool,
          overwrite: bool, pause_at: int | None) -> None:
    """Train the model CONFIG describes; checkpoints, metrics and plots go to the run directory.

    CONFIG may also be a model directory (`llmbricks import gpt2` writes one) or a run: its
    config, starting from its weights (train.init_from).

    Ctrl-C finishes the current step, writes a checkpoint and exits 130; --resume continues it.
    Under `torchrun --nproc_per_node N -m llmbricks train CONFIG` the ranks train data-parallel.
    """
    from llmbricks.core.train.loop import TrainingInterrupted
    from llmbricks.core.train.session import default_run_dir, training_config
    from llmbricks.core.train.session import train as run_training

    if resume and overwrite:
        raise click.UsageError("--resume continues a run and --overwrite starts it over: give one")
    config = training_config(config_file, overrides)
    directory = Path(out) if out else default_run_dir(config, resume=resume)
    try:
        result = run_training(config, out=directory, resume=resume, overwrite=overwrite,
                              pause_at=pause_at)
    except TrainingInterrupted as exc:
        again = ["llmbricks", "train", config_file, *[f"--set={o}" for o in overrides],
                 "--out", str(directory), "--resume"]
        click.echo(f"interrupted at step {exc.step}; checkpoint written. Resume with:\n  "
                   + shlex.join(again), err=True)
        sys.exit(exc.exit_code)
    if not result.main_process:
        return  # under torchrun, rank 0 alone reports (its metrics are the run's)
    if result.status == "finished":
        click.echo(f"run {result.run_dir} already finished at step {result.step}; nothing to do "
                   "(to train further, --resume with a larger train.max_steps)")
        return
    metrics = result.metrics
    val = metrics.get("val_loss")
    if result.status == "paused":
        click.echo(f"paused at step {result.step}, val loss {_fmt(val)}; --resume continues it")
        click.echo(f"run: {result.run_dir}")
        return
    click.echo(f"done: {result.step} steps, train loss {_fmt(metrics.get('train_loss'))}, "
               f"val loss {_fmt(val)}")
    click.echo(f"run: {result.run_dir}  (plot: {result.run_dir / 'loss.png'})")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
