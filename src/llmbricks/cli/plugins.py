"""``llmbricks plugins``: every plugin, what it provides, and what failed to load."""

from __future__ import annotations

from dataclasses import asdict

import click

from .options import console, echo_json, json_option


@click.command()
@json_option
def plugins(as_json: bool) -> None:
    """List loaded plugins with their versions, components and load errors."""
    from llmbricks.core.registry import get_registry

    registry = get_registry()
    records = sorted(registry.plugins.values(), key=lambda r: r.name)
    duplicates = registry.duplicates()
    if as_json:
        echo_json({"plugins": [asdict(r) for r in records],
                   "duplicates": [{"kind": k, "name": n, "plugins": p} for k, n, p in duplicates]})
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="llmbricks plugins", title_justify="left")
    for column in ("plugin", "distribution", "components", "presets", "status"):
        table.add_column(column, overflow="fold")
    for r in records:
        dist = f"{r.distribution} {r.version}" if r.distribution else "-"
        comps = ", ".join(f"{k}:{n}" for k, n in r.components) or "-"
        status = f"[red]error: {escape(r.error)}[/red]" if r.error else "ok"
        table.add_row(escape(r.name), escape(dist), escape(comps), escape(", ".join(r.presets) or "-"),
                      status)
    out = console()
    out.print(table)
    for kind, name, owners in duplicates:
        out.print(f"[yellow]conflict:[/yellow] {kind} '{name}' is registered by "
                  f"{' and '.join(owners)}; pick one with "
                  f"{' or '.join(f'{o}:{name}' for o in owners)}")
