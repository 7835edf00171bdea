"""``llmbricks model summary``."""

from __future__ import annotations

import click

from llmbricks.cli.options import command_with_config, console, echo_json, json_option, load


@click.group()
def model() -> None:
    """Inspect the model a config describes; merge a run's adapters into its weights."""


@model.command("summary")
@command_with_config
@json_option
def summary(config_file: str, overrides: tuple[str, ...], as_json: bool) -> None:
    """Parameters per part, in total, with the head tied and untied, and fp32 memory.

    The model is built on the meta device, so even gpt2-xl takes no memory or time.
    """
    from llmbricks.core.build import summarize_config

    cfg = load(config_file, overrides)
    s = summarize_config(cfg)
    if as_json:
        echo_json(s.to_data())
        return
    from rich.table import Table

    out = console()
    out.print(f"model summary: {config_file}")
    table = Table()
    table.add_column("part")
    table.add_column("parameters", justify="right")
    for part, count in s.parts.items():
        if part == "head" and s.head_tied:
            table.add_row(part, "tied to embedding")
        elif count:
            table.add_row(part, f"{count:,}")
    table.add_row("[bold]total[/bold]", f"[bold]{s.total:,}[/bold]")
    out.print(table)
    out.print(f"total parameters:       {s.total:,} (head {'tied' if s.head_tied else 'untied'})")
    out.print(f"with the head untied:   {s.untied:,} ({s.untied / 1e6:.1f}M)")
    out.print(f"with the head tied:     {s.tied:,} ({s.tied / 1e6:.1f}M)")
    out.print(f"fp32 weights:           {s.fp32_bytes / 2**20:,.2f} MiB")


@model.command("merge")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--overwrite", is_flag=True, help="Replace OUT if it is a non-empty directory.")
def merge(run: str, out: str, overwrite: bool) -> None:
    """Fold RUN's adapters (LoRA) into its base weights and write the model directory OUT.

    OUT is a plain model: generate, eval, export and train.init_from read it, with no adapter.
    """
    from llmbricks.core.tasks.merge import merge_adapters

    directory, count = merge_adapters(run, out, overwrite=overwrite)
    click.echo(f"merged {count} adapter{'s' if count != 1 else ''} of {run} into {directory}")
