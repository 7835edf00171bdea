"""The battery's shared checks: a bad input fails with one clear line and changes nothing else.

Every case of ``tests/e2e/test_bad_*.py`` runs the CLI (in process when it can, so a hundred cases
stay fast; in a subprocess when it needs a fresh interpreter) and asserts, through
:func:`assert_clean_failure`, the error policy of ``docs/errors.md``:

- the exit code (2 for usage and config, 1 at run time);
- stderr's last line starts with ``error:`` (or Click's ``Error:`` for usage errors) and names
  the problem (the words the case lists, case-insensitive);
- no traceback and no Python exception class name standing in for a message;
- for llmbricks' own errors, exactly one line on stderr;
- nothing outside the target changed (:func:`snapshot` before, compared after).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import run_cli

#: Exception class names that must never be the message a user reads.
PYTHON_EXCEPTIONS = re.compile(
    r"\b(AttributeError|TypeError|KeyError|IndexError|ValueError|RecursionError|OverflowError|"
    r"RuntimeError|AssertionError|UnicodeDecodeError|UnicodeEncodeError|ZeroDivisionError|"
    r"NameError|ImportError|ModuleNotFoundError|NotImplementedError|UnpicklingError)\b")


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


def invoke(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
           subprocess: bool = False) -> Result:
    """Run ``llmbricks ARGS`` in this process (default) or in a fresh interpreter."""
    if subprocess:
        done = run_cli(*args, env=env, cwd=cwd)
        return Result(done.returncode, done.stdout, done.stderr)
    from llmbricks.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    saved_env = dict(os.environ)
    saved_cwd = os.getcwd()
    try:
        os.environ.update(env or {})
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(list(args))
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    return Result(code, out.getvalue(), err.getvalue())


def assert_clean_failure(result: Result, code: int, *words: str) -> str:
    """The policy's checks on a failed command; returns the error line."""
    stderr = result.stderr.strip()
    assert result.code == code, f"exit {result.code}, wanted {code}; stderr:\n{result.stderr}"
    assert stderr, "no message on stderr"
    assert "Traceback" not in stderr, stderr
    lines = stderr.splitlines()
    line = lines[-1]
    assert line.startswith(("error:", "Error:")), f"last line is not an error line: {line!r}"
    if line.startswith("error:"):
        assert len(lines) == 1, f"more than one line on stderr:\n{stderr}"
    assert "--debug for the traceback" not in line, f"an unexpected exception leaked: {line}"
    assert not PYTHON_EXCEPTIONS.search(line), f"a Python exception name stands in: {line}"
    for word in words:
        assert word.lower() in line.lower(), f"{word!r} not in {line!r}"
    return line


def snapshot(*roots: Path) -> dict[str, tuple[int, str]]:
    """Every file and directory under ``roots``: path -> (mode, content hash)."""
    seen: dict[str, tuple[int, str]] = {}
    for root in roots:
        if not root.exists() and not root.is_symlink():
            seen[str(root)] = (0, "absent")
            continue
        paths = [root, *root.rglob("*")] if root.is_dir() and not root.is_symlink() else [root]
        for path in paths:
            stat = path.lstat()
            if path.is_symlink():
                digest = "->" + os.readlink(path)
            elif path.is_file():
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                digest = "dir"
            seen[str(path)] = (stat.st_mode, digest)
    return seen
