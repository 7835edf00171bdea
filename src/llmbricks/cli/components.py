"""``llmbricks components [KIND] [--json]`` and ``llmbricks components show KIND NAME``."""

from __future__ import annotations

from dataclasses import asdict

import click

from llmbricks.cli.options import console, echo_json, json_option


@click.command(context_settings={"ignore_unknown_options": False})
@click.argument("args", nargs=-1, metavar="[KIND] | show KIND NAME")
@json_option
def components(args: tuple[str, ...], as_json: bool) -> None:
    """List registered components, or show one: `components show positional absolute`."""
    from llmbricks.core.registry import get_registry

    registry = get_registry()
    if args and args[0] == "show":
        if len(args) != 3:
            raise click.UsageError("usage: llmbricks components show KIND NAME")
        _show(registry, args[1], args[2], as_json)
        return
    if len(args) > 1:
        raise click.UsageError("give at most one KIND (or `show KIND NAME`)")
    kinds = [args[0]] if args else registry.kinds()
    rows = []
    for kind in kinds:
        for name in registry.names(kind):
            for reg in registry.registrations(kind, name):
                rows.append({"kind": kind, "name": name, "plugin": reg.plugin,
                             "summary": reg.cls.summary()})
    if as_json:
        echo_json(rows)
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="llmbricks components", title_justify="left")
    for column in ("kind", "name", "plugin", "summary"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(escape(row[c]) for c in ("kind", "name", "plugin", "summary")))
    console().print(table)
    empty = [k for k in kinds if not registry.names(k)]
    if empty and not args:
        click.echo(f"(no components yet for: {', '.join(empty)})")


def _show(registry, kind: str, name: str, as_json: bool) -> None:
    info = registry.info(kind, name)
    if as_json:
        echo_json(asdict(info))
        return
    from rich.markup import escape
    from rich.table import Table

    out = console()
    dist = f"{info.distribution} {info.version}" if info.distribution else "not installed as a package"
    out.print(f"[bold]{info.kind} '{info.name}'[/bold] - {escape(info.summary)}")
    out.print(f"plugin: {escape(info.plugin)} ({escape(dist)})")
    rest = info.doc.partition("\n")[2].strip()
    if rest:
        out.print(escape(rest))
    if not info.params:
        out.print("parameters: none")
        return
    table = Table(title="parameters", title_justify="left")
    for column in ("name", "type", "default", "description"):
        table.add_column(column, overflow="fold")
    for p in info.params:
        default = "(required)" if p.required else repr(p.default)
        table.add_row(p.name, escape(p.type), escape(default), escape(p.description or ""))
    out.print(table)
