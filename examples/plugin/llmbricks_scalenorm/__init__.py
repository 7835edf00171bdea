"""An example third-party llmbricks plugin: a norm, a preset and a CLI verb."""

from __future__ import annotations

import click

import llmbricks


@llmbricks.hookimpl
def llmbricks_components():
    from .scalenorm import ScaleNorm

    return [ScaleNorm]


@llmbricks.hookimpl
def llmbricks_presets():
    # The baby GPT shape with ScaleNorm in every norm slot.
    return {
        "scalenorm-baby": {
            "context_length": 64,
            "emb_dim": 128,
            "n_layers": 4,
            "n_heads": 4,
            "dropout": 0.0,
            "tokenizer": "char",
            "norm": "scalenorm",
        }
    }


@llmbricks.hookimpl
def llmbricks_commands(cli: click.Group) -> None:
    @cli.command("scalenorm-info")
    def scalenorm_info() -> None:
        """What the llmbricks-scalenorm plugin adds."""
        click.echo("llmbricks-scalenorm: norm 'scalenorm', preset 'scalenorm-baby'")
