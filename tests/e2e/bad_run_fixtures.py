"""Shared fixtures of the run and file batteries: a finished tiny run, copies to damage, read-only."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.bad_inputs import invoke
from tests.e2e.train_fixtures import tiny_config

#: 8 steps, checkpoints at 4 and 8 (the final one), an evaluation and a sample at each.
TRAIN = {"max_steps": 8, "eval_every": 4, "checkpoint_every": 4, "keep_checkpoints": 2}


def make_finished_run(root: Path) -> Path:
    """Train the tiny run into ``root/run`` in process; return ``root``."""
    config = tiny_config(root, **TRAIN)
    result = invoke("train", str(config), "--out", str(root / "run"))
    assert result.code == 0, result.stderr
    return root


def copy_run(source: Path, target: Path) -> Path:
    """A copy of ``source/run`` (links kept as links) at ``target/run``; returns it."""
    return Path(shutil.copytree(source / "run", target / "run", symlinks=True))


def temporaries(root: Path) -> list[Path]:
    """What an atomic writer leaves when it fails: ``.NAME.RANDOM.tmp`` files and folders."""
    from llmbricks.core.store.atomic import is_temp_name

    return [p for p in root.rglob("*") if is_temp_name(p.name)]


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[Path]:
    """``path`` made unwritable: chmod for a normal user; for root (whom chmod does not stop) a
    read-only bind mount, or the test is skipped."""
    if os.geteuid() != 0:
        modes = {p: stat.S_IMODE(p.stat().st_mode) for p in [path, *path.rglob("*")]
                 if p.is_dir() and not p.is_symlink()}
        for p in modes:
            p.chmod(0o555)
        try:
            yield path
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
        return
    try:
        subprocess.run(["mount", "--bind", str(path), str(path)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("running as root, whom chmod does not stop, and no bind mount is possible")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(path)], check=True, capture_output=True)
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A real, small file system at ``path`` (root only; skipped elsewhere)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root; the patched-writer cases cover the rest")
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                       check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("no tmpfs can be mounted here")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)
