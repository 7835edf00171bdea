"""Refresh every ``$ llmbricks ... --help`` and ``$ llmbricks components ...`` block in the docs.

Run from the repository root:

    make docs   (or: .venv/bin/python docs/gen_cli_help.py)

A help block is a fenced ``console`` block whose first line is ``$ llmbricks ARGS --help``; its
output (the lines up to the next ``$`` line or the fence) is replaced with what the command
prints at 80 columns. ``$ llmbricks components ...`` blocks (the registry's tables, drawn by rich)
are refreshed the same way at 100 columns when the command succeeds. The README is refreshed
too. ``--check`` writes nothing and exits 1 naming the stale blocks, which is what the test suite
runs. Only the built-in verbs are documented, so plugin verbs installed in
the same environment do not leak in (``LLMBRICKS_DISABLE_PLUGINS`` is not needed: help pages of
built-in verbs do not list plugin verbs, and the top-level page's epilog names ``plugins``).
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from pathlib import Path

from click.testing import CliRunner

from llmbricks.cli.main import cli

DOCS = Path(__file__).resolve().parent
PAGES = [*sorted(DOCS.glob("*.md")), DOCS.parent / "README.md"]
HELP_LINE = re.compile(r"^\$ llmbricks (?P<args>.*--help)$")
#: Registry tables: deterministic for the built-in components (no paths, no timings).
TABLE_LINE = re.compile(r"^\$ llmbricks (?P<args>components( [a-z_ ]+)?( --json)?)$")
TABLE_COLUMNS = "100"


def help_text(args: list[str]) -> str:
    """What ``llmbricks ARGS`` prints in an 80-column terminal (Click wraps at 78)."""
    result = CliRunner().invoke(cli, args, prog_name="llmbricks", terminal_width=78)
    if result.exit_code != 0:
        raise SystemExit(f"llmbricks {shlex.join(args)} failed: {result.output}")
    return result.output.rstrip("\n")


def table_text(args: list[str]) -> str | None:
    """What ``llmbricks components ...`` prints at 100 columns; ``None`` when it fails (an example
    of an error, left as written)."""
    result = CliRunner().invoke(cli, args, prog_name="llmbricks", env={"COLUMNS": TABLE_COLUMNS})
    if result.exit_code != 0:
        return None
    return "\n".join(line.rstrip() for line in result.output.rstrip("\n").split("\n"))


def refresh(text: str) -> tuple[str, list[str]]:
    """``text`` with every help block's output regenerated, and the commands whose output changed."""
    lines, out, stale = text.split("\n"), [], []
    i = 0
    while i < len(lines):
        line = lines[i]
        out.append(line)
        match = HELP_LINE.match(line) or TABLE_LINE.match(line)
        i += 1
        if not match:
            continue
        end = i
        while end < len(lines) and not lines[end].startswith(("$ ", "```")):
            end += 1
        args = shlex.split(match["args"])
        output = help_text(args) if HELP_LINE.match(line) else table_text(args)
        if output is None:
            continue
        fresh = output.split("\n")
        if lines[i:end] != fresh:
            stale.append(line[2:])
        out.extend(fresh)
        i = end
    return "\n".join(out), stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a block is stale")
    args = parser.parse_args(argv)
    stale_all: list[str] = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        fresh, stale = refresh(text)
        stale_all += [f"{page.name}: {command}" for command in stale]
        if stale and not args.check:
            page.write_text(fresh, encoding="utf-8")
    for entry in stale_all:
        print(("stale: " if args.check else "refreshed: ") + entry)
    return 1 if args.check and stale_all else 0


if __name__ == "__main__":
    sys.exit(main())
