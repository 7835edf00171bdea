"""The ``llmbricks`` command: lazy verb loading and the error policy.

Verbs are imported only when used, so ``llmbricks --help`` and ``--version`` import no torch and
load no plugin. Errors print one line (exit 2 for usage and config, 1 at run time); ``--debug``
(before the verb) prints the traceback above that line, with the same exit code. Warnings, from
llmbricks or a library it calls, print as one ``warning: ...`` line each.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import traceback
import warnings
from collections.abc import Iterator
from typing import Any

import click

from llmbricks import __version__
from llmbricks.core.errors import LlmbricksError

#: Read here without importing the registry, so `VERB --help` stays light (same rule as the registry).
STRICT_PLUGINS_ENV = "LLMBRICKS_STRICT_PLUGINS"

BUILTIN_COMMANDS: dict[str, str] = {
    "components": "llmbricks.cli.components:components",
    "plugins": "llmbricks.cli.plugins:plugins",
    "config": "llmbricks.cli.config:config",
    "model": "llmbricks.cli.model:model",
    "tokenizer": "llmbricks.cli.tokenizer:tokenizer",
    "data": "llmbricks.cli.data:data",
    "generate": "llmbricks.cli.generate:generate",
    "chat": "llmbricks.cli.chat:chat",
    "classify": "llmbricks.cli.classify:classify",
    "train": "llmbricks.cli.train:train",
    "eval": "llmbricks.cli.evaluate:evaluate",
    "ablate": "llmbricks.cli.ablate:ablate",
    "schedule": "llmbricks.cli.schedule:schedule",
    "serve": "llmbricks.cli.serve:serve",
    "inspect": "llmbricks.cli.inspect:inspect",
}


class LazyGroup(click.Group):
    """Imports a verb's module only when the verb runs; plugin verbs load on first miss."""

    _plugins_loaded = False
    plugin_verbs: dict[str, str] = {}  # replaced when the plugin verbs load, never mutated

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*BUILTIN_COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in BUILTIN_COMMANDS and name not in self.commands:
            module, _, attr = BUILTIN_COMMANDS[name].partition(":")
            self.add_command(getattr(importlib.import_module(module), attr), name)
        if name not in self.commands:
            self.load_plugin_commands()
        return self.commands.get(name)

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[Any, Any, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        _state["plugin_verb"] = (name, self.plugin_verbs[name]) if name in self.plugin_verbs else None
        return name, command, rest

    def load_plugin_commands(self) -> None:
        """Add the plugins' verbs, once; a plugin verb never replaces a built-in one."""
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        from llmbricks.core.registry import get_registry

        self.plugin_verbs = get_registry().add_commands(self, reserved=BUILTIN_COMMANDS)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]},
             epilog="Plugins may add more verbs: see `llmbricks plugins`.")
@click.version_option(__version__, "--version", prog_name="llmbricks")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors (put it before the verb).")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Build, train, finetune and compare GPT-style language models from swappable parts."""
    _state["debug"] = debug
    if os.environ.get(STRICT_PLUGINS_ENV, "").strip().lower() in {"1", "true", "yes", "on"}:
        # Strict mode checks every plugin, its verbs included, before any verb runs.
        ctx.command.load_plugin_commands()


_state: dict[str, Any] = {"debug": False, "plugin_verb": None}


def _report(exc: BaseException, line: str) -> None:
    """One line on stderr; with --debug the traceback comes first."""
    if _state["debug"]:
        traceback.print_exception(exc)
    click.echo(line, err=True)


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """Show each warning as one ``warning: ...`` line on stderr, not Python's two-line form.

    The same text is shown once per command, however many layers or steps raise it.
    """
    shown: set[str] = set()

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: object = None, line: str | None = None) -> None:
        text = " ".join(str(message).split())
        if text not in shown:
            shown.add(text)
            click.echo(f"warning: {text}", err=True)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry point."""
    _state["debug"] = False
    _state["plugin_verb"] = None
    try:
        with one_line_warnings():
            code = cli.main(args=argv, prog_name="llmbricks", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except LlmbricksError as exc:
        _report(exc, f"error: {exc}")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        if _state["plugin_verb"]:  # a plugin's own verb failed: name it rather than the exception class
            verb, plugin = _state["plugin_verb"]
            hint = "" if _state["debug"] else " (--debug shows the plugin's traceback)"
            _report(exc, f"error: verb '{verb}' of plugin '{plugin}' failed: "
                         f"{message or type(exc).__name__}{hint}")
            sys.exit(1)
        hint = "" if _state["debug"] else " (run with --debug for the traceback)"
        _report(exc, f"error: {type(exc).__name__}: {message}{hint}")
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
