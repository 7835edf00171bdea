"""The one atomic writer: every file and directory llmbricks writes goes through here.

Why: a reader (another process, a resumed run, a user's ``cat``) never sees a half-written file,
a crash or Ctrl-C at any moment leaves either the old file or the new one, never a mix, and no
temporary file is left behind by a failure. Append-only logs (``metrics.jsonl``, ``samples.txt``,
``*.log``, TensorBoard's event files) are the only files written in place.

How, for every writer here:

- the content goes into a temporary ``.{name}.{random}.tmp`` in the *same* directory as the target
  (one naming scheme: ``is_temp_name`` recognises it, ``remove_leftovers`` clears what a killed
  process left);
- the temporary file is created with ``os.open(..., O_CREAT | O_EXCL, 0o666)`` and a directory
  with ``os.mkdir(..., 0o777)``, so the result has the mode any normal file gets under the umask
  (never ``mkstemp``'s 0600); a library that replaces the temporary file with its own 0600 one
  (safetensors does) is put back to that mode;
- it is flushed and fsynced, renamed over the target with ``os.replace``, and the directory is
  fsynced, so the rename itself survives a power cut;
- on any exception, ``KeyboardInterrupt`` included, the temporary is removed and the target is left
  as it was.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from ..errors import CheckpointError

__all__ = [
    "atomic_directory",
    "atomic_file",
    "atomic_path",
    "check_output_dir",
    "fresh_temp_dir",
    "fsync_dir",
    "is_temp_name",
    "remove_leftovers",
    "temp_name",
    "write_atomic",
]

_TEMP_NAME = re.compile(r"^\..+\.[^.]+\.tmp$")
_TRIES = 100


def temp_name(name: str) -> str:
    """A fresh temporary name for a file or directory called ``name``: ``.{name}.{random}.tmp``."""
    if len(os.fsencode(name)) > 200:  # keep the temporary name within the usual 255-byte limit
        name = name[:50]
    return f".{name}.{secrets.token_hex(4)}.tmp"


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is one of this module's temporary names (a leftover if no one writes)."""
    return bool(_TEMP_NAME.match(name))


def remove_leftovers(directory: str | Path) -> list[Path]:
    """Delete the temporary files and directories a killed writer left in ``directory``.

    Only safe when nothing is writing there (a run being resumed). Returns what was removed.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for path in directory.iterdir():
        if is_temp_name(path.name):
            _remove(path)
            removed.append(path)
    return removed


def fsync_dir(directory: str | Path) -> None:
    """Make the entries of ``directory`` (a rename into it) durable; a no-op where unsupported."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # Windows cannot open a directory; its renames need no directory sync
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP, errno.EACCES):
            raise
    finally:
        os.close(fd)


def write_atomic(path: str | Path, data: str | bytes, *, encoding: str = "utf-8") -> Path:
    """Write ``data`` (text, or bytes) as the whole of ``path``, atomically. Returns the path.

    Text is encoded as given, ``\n`` never translated: the file is the same on every platform.
    """
    if isinstance(data, str):
        with atomic_file(path, "w", encoding=encoding) as handle:
            handle.write(data)
    else:
        with atomic_file(path, "wb") as handle:
            handle.write(data)
    return Path(path)


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "wb", *,
                encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Yield an open handle (``mode`` ``"wb"`` or ``"w"``) whose content becomes ``path`` on success.

    For writers that stream into a file object: ``torch.save``, ``savefig``, downloads. Text
    mode writes ``\n`` as is. The handle may be closed by the body; it is fsynced and renamed
    over ``path`` after it.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_file writes a whole file: mode 'w' or 'wb', not {mode!r}")
    target = Path(path)
    fd, tmp = _create_temp(target)
    try:
        text = {"encoding": encoding, "newline": ""} if mode == "w" else {}
        handle = os.fdopen(fd, mode, **text)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    try:
        synced = False
        with handle:
            yield handle
            if not handle.closed:
                handle.flush()
                os.fsync(handle.fileno())
                synced = True
        if not synced:  # the body closed the handle itself
            _fsync_file(tmp)
        _commit(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (an empty file) that becomes ``path`` on success.

    For libraries that insist on a file name (safetensors ``save_file``, ``np.memmap``). The
    result gets the umask's mode even when the library wrote (or renamed in) a 0600 file.
    """
    target = Path(path)
    fd, tmp = _create_temp(target)
    try:
        try:  # the mode a normal file gets here (0o666 & ~umask): no need to read the umask
            mode = stat.S_IMODE(os.fstat(fd).st_mode)
        finally:
            os.close(fd)
        yield tmp
        if stat.S_IMODE(tmp.stat().st_mode) != mode:
            os.chmod(tmp, mode)
        _fsync_file(tmp)
        _commit(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def check_output_dir(directory: str | Path, *, overwrite: bool = False) -> Path:
    """Refuse a file, or a non-empty directory unless ``overwrite``: check before slow work."""
    target = Path(directory)
    if target.exists() and not target.is_dir():
        raise CheckpointError(f"{target} exists and is not a directory")
    if target.is_dir() and not overwrite and any(target.iterdir()):
        raise CheckpointError(f"{target} already exists and is not empty; choose another "
                              "directory or overwrite it (--overwrite)")
    return target


@contextlib.contextmanager
def atomic_directory(directory: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary directory beside ``directory``; on success it becomes ``directory``.

    A non-empty ``directory`` is refused unless ``overwrite`` (then it is replaced whole); an
    empty one is replaced. Write inside it with plain writes: before the rename every file gets
    the mode the umask gives (a library that wrote a 0600 file, as safetensors does, included)
    and is fsynced. On an exception the temporary directory is removed and ``directory`` is left
    as it was.
    """
    target = check_output_dir(directory, overwrite=overwrite)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = fresh_temp_dir(target.parent, target.name)
    except OSError as exc:
        raise CheckpointError(f"cannot create {target}: {exc}") from None
    try:
        yield tmp
        _settle_tree(tmp)
        _swap_into_place(tmp, target)
        fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def fresh_temp_dir(parent: str | Path, name: str) -> Path:
    """A new empty directory ``.{name}.{random}.tmp`` in ``parent``, with the umask's mode."""
    parent = Path(parent)
    for _ in range(_TRIES):
        path = parent / temp_name(name)
        try:
            path.mkdir(0o777)  # unlike mkdtemp (0700), the mode follows the umask
            return path
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, f"no free temporary name for {name} in {parent}")


# --- internals -------------------------------------------------------------------------------


def _create_temp(target: Path) -> tuple[int, Path]:
    """Create ``.{name}.{random}.tmp`` beside ``target`` (parents made); return ``(fd, path)``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(_TRIES):
        tmp = target.with_name(temp_name(target.name))
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, f"no free temporary name for {target}")


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _settle_tree(root: Path) -> None:
    """Give every file under ``root`` the umask's mode and fsync it all (before the rename).

    ``root`` was made with ``mkdir(0o777)``, so its mode is ``0o777 & ~umask``; a normal file's
    is that without the execute bits.
    """
    file_mode = stat.S_IMODE(root.stat().st_mode) & 0o666
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            if path.is_symlink():
                continue
            if stat.S_IMODE(path.stat().st_mode) != file_mode:
                os.chmod(path, file_mode)
            _fsync_file(path)
        fsync_dir(folder)


def _commit(tmp: Path, target: Path) -> None:
    os.replace(tmp, target)
    fsync_dir(target.parent)


def _swap_into_place(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` to ``target``; an existing (empty or overwritten) ``target`` goes aside first."""
    old = None
    try:
        if target.exists():  # empty, or replaced on purpose: move it aside, then drop it
            old = fresh_temp_dir(target.parent, target.name)
            os.replace(target, old / target.name)
        os.replace(tmp, target)
    except OSError as exc:
        if old is not None and (old / target.name).exists() and not target.exists():
            os.replace(old / target.name, target)  # put the previous directory back
        raise CheckpointError(f"cannot write {target}: {exc}") from None
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
