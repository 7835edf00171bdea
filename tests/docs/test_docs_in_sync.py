"""The generated components reference matches the registry (run `make docs` when it does not)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_components_reference_is_up_to_date():
    generated = subprocess.run([sys.executable, str(ROOT / "docs" / "gen_components.py")],
                               capture_output=True, text=True, check=True, cwd=ROOT).stdout
    committed = (ROOT / "docs" / "components.md").read_text(encoding="utf-8")
    assert generated == committed, "docs/components.md is stale: run `make docs`"


def test_cli_help_blocks_in_the_docs_are_up_to_date():
    checked = subprocess.run([sys.executable, str(ROOT / "docs" / "gen_cli_help.py"), "--check"],
                             capture_output=True, text=True, cwd=ROOT)
    assert checked.returncode == 0, f"run `make docs`:\n{checked.stdout}{checked.stderr}"
