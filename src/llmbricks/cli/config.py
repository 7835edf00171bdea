"""``llmbricks config new|show|validate``."""

from __future__ import annotations

import click

from llmbricks.cli.options import command_with_config, load


@click.group()
def config() -> None:
    """Create, show and validate config files."""


@config.command("new")
@click.option("--preset", default=None, help="Start from a named model preset (e.g. gpt2-small).")
def new(preset: str | None) -> None:
    """Print a complete config (every default written out) to start from."""
    from llmbricks.core.config import default_config

    click.echo(default_config(preset).to_yaml(), nl=False)


@config.command("show")
@command_with_config
def show(config_file: str, overrides: tuple[str, ...]) -> None:
    """Print the resolved config: presets expanded, overrides applied, every default shown."""
    click.echo(load(config_file, overrides).to_yaml(), nl=False)


@config.command("validate")
@command_with_config
@click.option("--smoke", is_flag=True,
              help="Also build the model and run one tiny forward and backward pass on CPU.")
def validate(config_file: str, overrides: tuple[str, ...], smoke: bool) -> None:
    """Check a config without running anything (with --smoke: build it and run one step)."""
    cfg = load(config_file, overrides)
    m = cfg.model
    click.echo(f"{config_file}: valid ({m.arch.name} model, {m.n_layers} layers, "
               f"{m.emb_dim} dims, {m.n_heads} heads, context {m.context_length}, "
               f"vocab {m.vocab_size})")
    if m.vocab_size == "auto":
        click.echo("note: vocab_size is auto: " + (
            f"tokenizer '{m.tokenizer.name}' sets it once trained on the data" if m.tokenizer
            else "set model.tokenizer or model.vocab_size before building the model"))
    if smoke:
        from llmbricks.core.tasks.smoke import PLACEHOLDER_VOCAB, smoke_test

        result = smoke_test(cfg)
        note = (f" (vocab_size auto: a placeholder vocabulary of {PLACEHOLDER_VOCAB})"
                if result.vocab_placeholder else "")
        click.echo(f"smoke: ok - {result.parameters:,} parameters, logits "
                   f"{list(result.logits_shape)}, loss {result.loss:.4f}, backward ok{note}")
