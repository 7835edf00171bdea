"""``llmbricks model summary``."""

from __future__ import annotations

from typing import Any

import click

from llmbricks.cli.options import command_with_config, console, echo_json, json_option, load


@click.group()
def model() -> None:
    """Inspect the model a config describes; merge a run's adapters into its weights."""


@model.command("summary")
@command_with_config
@json_option
def summary(config_file: str, overrides: tuple[str, ...], as_json: bool) -> None:
    """Parameters per part, in total, with the head tied and untied, FLOPs, training memory.

    The model is built on the meta device, so even gpt2-xl takes no memory or time. Training
    FLOPs are 6N + 12 L H Q T per token (N: the parameters in matrix multiplies), times
    batch_size x grad_accum x context_length tokens per optimizer step. The training-memory
    estimate is the one `llmbricks train` checks before it allocates anything.
    """
    from llmbricks.core.build import build_model, summarize
    from llmbricks.core.flops import estimate_flops

    cfg = load(config_file, overrides)
    model = build_model(cfg, device="meta")
    s = summarize(model)
    flops = estimate_flops(model)
    tokens_per_step = cfg.train.batch_size * cfg.train.grad_accum * cfg.model.context_length
    memory, available, why_not = _training_memory(cfg)
    if as_json:
        data = s.to_data()
        data["flops"] = {**flops.to_data(), "tokens_per_step": tokens_per_step,
                         "train_per_step": flops.train_per_step(tokens_per_step)}
        data["training_memory"] = None if memory is None else {
            **memory.to_data(), "available_bytes": available,
            "fits": None if available is None else memory.total <= available}
        if why_not:
            data["training_memory_error"] = why_not
        echo_json(data)
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
    _print_flops(out, flops, cfg, tokens_per_step)
    _print_memory(out, memory, available, why_not)


def _print_flops(out: Any, flops: Any, cfg: Any, tokens_per_step: int) -> None:
    from llmbricks.core.flops import format_flops

    out.print(f"FLOPs per token:        {format_flops(flops.train_per_token)} to train (6N + "
              f"12LHQT, N = {format_flops(flops.matmul_params)}), "
              f"{format_flops(flops.forward_per_token)} forward")
    train = cfg.train
    out.print(f"FLOPs per step:         {format_flops(flops.train_per_step(tokens_per_step))} "
              f"({tokens_per_step:,} tokens: batch {train.batch_size}, accum {train.grad_accum}, "
              f"context {cfg.model.context_length:,})")


def _training_memory(cfg: Any) -> tuple[Any, int | None, str | None]:
    """The estimate on the config's device, the memory available there, or why there is none."""
    from llmbricks.core.errors import LlmbricksError
    from llmbricks.core.train.memory import available_memory, estimate_memory

    device = _summary_device(cfg.train.device)
    try:
        memory = estimate_memory(cfg, device=device)
    except LlmbricksError as exc:  # e.g. train.trainable: none without adapters
        return None, None, str(exc)
    return memory, available_memory(device), None


def _summary_device(requested: str) -> str:
    """The device `train` would pick, without starting anything on it."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def _print_memory(out: Any, memory: Any, available: int | None, why_not: str | None) -> None:
    from llmbricks.core.train.memory import SKIP_ENV, gib

    if memory is None:
        out.print(f"training memory:        not estimated ({why_not})")
        return
    out.print(f"training memory:        about {gib(memory.total)} GiB on {memory.device} "
              f"({memory.breakdown()})")
    for note in memory.notes:
        out.print(f"                        ({note})")
    if available is not None:
        verdict = "fits" if memory.total <= available else \
            f"does NOT fit: `train` will refuse it unless {SKIP_ENV}=1"
        out.print(f"available:              {gib(available)} GiB; {verdict}")


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
