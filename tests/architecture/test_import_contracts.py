"""The house's arrows hold, and `lint-imports` notices when an import breaks one.

`make test` runs `lint-imports` on the real tree; here it runs on a copy of the package with
wrong imports planted, so a contract that silently checks nothing would fail this test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is not installed "
                                "(pip install -e '.[dev]')")


def lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    return subprocess.run([str(LINT_IMPORTS), str(tree / "pyproject.toml"), "--no-cache"],
                          cwd=tree, env=env, capture_output=True, text=True, timeout=300)


def plant(tree: Path, module: str, line: str) -> None:
    path = tree / "src" / Path(*module.split(".")).with_suffix(".py")
    path.write_text(path.read_text(encoding="utf-8") + f"\n{line}  # planted\n", encoding="utf-8")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "src" / "llmbricks", tmp_path / "src" / "llmbricks",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_tree_keeps_every_contract(tree: Path) -> None:
    result = lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_wrong_imports_break_their_contracts(tree: Path) -> None:
    plant(tree, "llmbricks.core.store.runs", "from llmbricks.core.tasks import generation")
    plant(tree, "llmbricks.core.interfaces", "from llmbricks.core.store import model_dir")
    plant(tree, "llmbricks.plugins.heads.lm", "from llmbricks.plugins.layers import norms")
    plant(tree, "llmbricks.core.ablation.stats", "from llmbricks.core.ablation import report")
    result = lint(tree)
    assert result.returncode == 1, result.stdout + result.stderr
    out = " ".join(result.stdout.split())  # the report wraps long contract names
    for broken in ("ablation > tasks > train > store > kernel BROKEN",
                   "The kernel imports no room of core (and nothing above core) BROKEN",
                   "Plugin packages are independent of each other BROKEN",
                   "No import cycles between the rooms of core or between plugin modules BROKEN"):
        assert broken in out, out
    assert "4 broken" in out
