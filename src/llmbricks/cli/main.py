"""The ``llmbricks`` command: lazy verb loading and the error policy.

Verbs are imported only when used, so ``llmbricks --help`` and ``--version`` import no torch and
load no plugin. Errors print one line (exit 2 for usage and config, 1 at run time); ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from llmbricks import __version__
from llmbricks.core.errors import LlmbricksError

BUILTIN_COMMANDS: dict[str, str] = {
    "components": "llmbricks.cli.components:components",
    "plugins": "llmbricks.cli.plugins:plugins",
    "config": "llmbricks.cli.config:config",
    "model": "llmbricks.cli.model:model",
}


class LazyGroup(click.Group):
    """Imports a verb's module only when the verb runs; plugin verbs load on first miss."""

    _plugins_loaded = False

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*BUILTIN_COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in BUILTIN_COMMANDS and name not in self.commands:
            module, _, attr = BUILTIN_COMMANDS[name].partition(":")
            self.add_command(getattr(importlib.import_module(module), attr), name)
        if name not in self.commands and not self._plugins_loaded:
            self._plugins_loaded = True
            from llmbricks.core.registry import get_registry

            get_registry().add_commands(self)
        return self.commands.get(name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]},
             epilog="Plugins may add more verbs: see `llmbricks plugins`.")
@click.version_option(__version__, "--version", prog_name="llmbricks")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
def cli(debug: bool) -> None:
    """Build, train, finetune and compare GPT-style language models from swappable parts."""
    if debug:
        os.environ["LLMBRICKS_DEBUG"] = "1"


def _debug() -> bool:
    return os.environ.get("LLMBRICKS_DEBUG", "") not in ("", "0") or "--debug" in sys.argv[1:]


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry point."""
    try:
        code = cli.main(args=argv, prog_name="llmbricks", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except LlmbricksError as exc:
        if _debug():
            raise
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:
        if _debug():
            raise
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        click.echo(f"error: {type(exc).__name__}: {message} (run with --debug for the traceback)",
                   err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
