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


def sampling_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--temperature``, ``--top-k`` and ``--top-p``, as ``generate`` and ``chat`` take them
    (their ranges are checked by the core's ``check_generation_params``)."""
    for option in reversed([
        click.option("--temperature", "-t", default=0.0, show_default=True, type=float,
                     help="0 = greedy; above 0, sample from softmax(logits / t)."),
        click.option("--top-k", type=int, help="Sample among the k most likely tokens (k >= 1)."),
        click.option("--top-p", type=float, help="Sample from the smallest set of tokens whose "
                     "probability reaches p, in (0, 1]."),
    ]):
        fn = option(fn)
    return fn


def check_run_dir(source: str) -> str:
    """RUN as the RUN verbs take it: a usage error (exit 2) naming it when it is not a directory,
    before anything loads."""
    from pathlib import Path

    if not Path(source).is_dir():
        raise click.UsageError(f"RUN '{source}' is not a directory")
    return source


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
