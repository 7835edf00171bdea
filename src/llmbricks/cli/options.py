"""Options shared by several verbs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

set_option = click.option(
    "--set", "overrides", multiple=True, metavar="PATH=VALUE",
    help="Override a config field by dotted path, e.g. --set model.n_layers=2 (value parsed as YAML).")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
config_argument = click.argument("config_file", metavar="CONFIG",
                                 type=click.Path(dir_okay=False, path_type=str))


def load(config_file: str, overrides: tuple[str, ...]) -> Any:
    from llmbricks.core.config import load_config

    return load_config(config_file, overrides)


def console() -> Any:
    from rich.console import Console

    return Console(soft_wrap=False)


def echo_json(data: Any) -> None:
    import json

    click.echo(json.dumps(data, indent=2, default=str))


def command_with_config(fn: Callable[..., Any]) -> Callable[..., Any]:
    return config_argument(set_option(fn))
