"""``llmbricks plugins``: every plugin, what it provides, and what failed to load."""

from __future__ import annotations

from dataclasses import asdict

import click

from llmbricks.cli.options import console, echo_json, json_option


@click.command()
@json_option
def plugins(as_json: bool) -> None:
    """List loaded plugins with their versions, components and load errors."""
    from llmbricks.cli.main import BUILTIN_COMMANDS
    from llmbricks.core.registry import get_registry

    registry = get_registry()
    commands = registry.commands(reserved=BUILTIN_COMMANDS)
    records = sorted(registry.plugins.values(), key=lambda r: r.name)
    duplicates = registry.duplicates()
    if as_json:
        echo_json({"plugins": [{**asdict(r), "commands": commands.get(r.name, [])} for r in records],
                   "duplicates": [{"kind": k, "name": n, "plugins": p} for k, n, p in duplicates]})
        return
    from rich.markup import escape

    out = console()
    for r in records:
        dist = f"{r.distribution} {r.version}" if r.distribution else "(not from a distribution)"
        status = "[red]FAILED[/red]" if r.error else "[green]ok[/green]"
        out.print(f"[bold]{escape(r.name)}[/bold]  {escape(dist)}  {status}")
        if r.error:
            out.print(f"  error: {escape(r.error)}", soft_wrap=True)
        if r.components:
            out.print("  components: " + escape(", ".join(f"{k}:{n}" for k, n in r.components)))
        if r.presets:
            out.print("  presets: " + escape(", ".join(r.presets)))
        if commands.get(r.name):
            out.print("  commands: " + escape(", ".join(commands[r.name])))
    for kind, name, owners in duplicates:
        out.print(f"[yellow]conflict:[/yellow] {kind} '{name}' is registered by "
                  f"{' and '.join(owners)}; pick one with "
                  f"{' or '.join(f'{o}:{name}' for o in owners)}", soft_wrap=True)
