"""Shared test helpers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SHARED_DATA = ROOT.parent / "shared" / "data"


def pytest_configure(config: pytest.Config) -> None:
    """Find the data files beside the checkout, and keep caches out of the user's home."""
    if "LLMBRICKS_DATA_DIR" not in os.environ and SHARED_DATA.is_dir():
        os.environ["LLMBRICKS_DATA_DIR"] = str(SHARED_DATA)
    if "LLMBRICKS_CACHE_DIR" not in os.environ:
        import tempfile

        os.environ["LLMBRICKS_CACHE_DIR"] = tempfile.mkdtemp(prefix="llmbricks-test-cache-")


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None
            ) -> subprocess.CompletedProcess[str]:
    """Run ``python -m llmbricks ARGS`` in a subprocess, as a user would."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "llmbricks", *args], capture_output=True,
                          text=True, env=full_env, cwd=cwd or ROOT, timeout=300)


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def write(tmp_path: Path):
    """Write a file under tmp_path and return its path."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return _write
