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
DATA_DIR_ENV = "LLMBRICKS_DATA_DIR"
# LLMBRICKS_NO_SHARED_DATA=1 leaves $LLMBRICKS_DATA_DIR unset: the suite as a bare clone sees it.
NO_SHARED_DATA_ENV = "LLMBRICKS_NO_SHARED_DATA"


def pytest_configure(config: pytest.Config) -> None:
    """Find the data files beside the checkout, and keep caches out of the user's home."""
    config.addinivalue_line(
        "markers", "data_files(*names): the test reads these files from $LLMBRICKS_DATA_DIR; "
        "it is skipped, naming them, when any is missing")
    if (DATA_DIR_ENV not in os.environ and SHARED_DATA.is_dir()
            and os.environ.get(NO_SHARED_DATA_ENV, "") in ("", "0")):
        os.environ[DATA_DIR_ENV] = str(SHARED_DATA)
    if "LLMBRICKS_CACHE_DIR" not in os.environ:
        import tempfile

        os.environ["LLMBRICKS_CACHE_DIR"] = tempfile.mkdtemp(prefix="llmbricks-test-cache-")


def missing_data_reason(*names: str) -> str | None:
    """Why the data files ``names`` cannot be read from $LLMBRICKS_DATA_DIR, or None if they can."""
    value = os.environ.get(DATA_DIR_ENV)
    if not value:
        where = "not set"
    elif not Path(value).is_dir():
        where = f"{value} is not a directory"
    else:
        lacking = [name for name in names if not (Path(value) / name).is_file()]
        if not lacking:
            return None
        where = f"{value} lacks {', '.join(lacking)}"
    needs = f"needs {', '.join(names)} in ${DATA_DIR_ENV}" if names else f"needs ${DATA_DIR_ENV}"
    return f"{needs} ({where}): make test sets it when ../shared/data exists"


def need_data(*names: str) -> Path:
    """Skip the calling test unless $LLMBRICKS_DATA_DIR holds every file in ``names``; return it.

    For fixtures and parametrized tests that know only at run time which files they read; a test
    that always reads the same files says so with ``@pytest.mark.data_files(...)`` instead.
    """
    reason = missing_data_reason(*names)
    if reason is not None:
        pytest.skip(reason)
    return Path(os.environ[DATA_DIR_ENV])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the tests marked ``data_files`` whose files are not in $LLMBRICKS_DATA_DIR."""
    for item in items:
        names = [name for mark in item.iter_markers("data_files") for name in mark.args]
        if names:
            reason = missing_data_reason(*dict.fromkeys(names))
            if reason is not None:
                item.add_marker(pytest.mark.skip(reason=reason))


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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
