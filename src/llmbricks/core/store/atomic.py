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
  as it was; a failure of the disk itself (full, read-only, permission denied, a file where a
  directory should be) becomes one ``CheckpointError`` line naming the path and the cause
  (:func:`write_error`), however the library that wrote reported it (torch's ``enforce fail``,
  safetensors' ``os error 28``).

Output directories are checked before slow work (:func:`check_output_dir`): a command replaces a
non-empty directory only when asked to (``--overwrite``) *and* it holds that command's own kind of
output (:class:`OutputKind`), so no user's folder is ever replaced. Directories a command reads
back (runs, model directories) are checked for symlinks leading outside them
(:func:`check_links`).

``LLMBRICKS_TEST_KILL_AT=POINT[@N]`` is a test hook, not a setting: at the ``N``-th time (default
the first) the store passes the named point (:func:`kill_point`), the process SIGKILLs itself, so
the tests can prove a kill at every stage of setup and of a checkpoint write resumes exactly.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import signal
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..errors import CheckpointError

__all__ = [
    "OutputKind",
    "atomic_directory",
    "atomic_file",
    "atomic_path",
    "check_links",
    "check_output_dir",
    "fresh_temp_dir",
    "fsync_dir",
    "is_temp_name",
    "kill_point",
    "remove_leftovers",
    "temp_name",
    "write_atomic",
    "write_error",
    "writing",
]

#: The test hook's variable: ``POINT`` or ``POINT@N`` (see the module docstring).
KILL_AT_ENV = "LLMBRICKS_TEST_KILL_AT"
_kill_counts: dict[str, int] = {}

#: What each errno means for a writer, and what the user can do about it.
_CAUSES = {
    errno.ENOSPC: "no space left on the device: free some space or choose another directory",
    errno.EDQUOT: "disk quota exceeded: free some space or choose another directory",
    errno.EROFS: "the file system is read-only: choose a writable directory",
    errno.EACCES: "permission denied: choose a directory you can write to",
    errno.EPERM: "operation not permitted: choose a directory you can write to",
    errno.ENOTDIR: "a part of the path is a file, not a directory: choose another path",
    errno.EISDIR: "a directory is in the way of a file: choose another path",
    errno.ENAMETOOLONG: "the name is too long: choose a shorter path",
    errno.EIO: "an I/O error from the device: check the disk",
    errno.EEXIST: "a file is in the way of a directory: choose another path",
}
_OS_ERROR_CODE = re.compile(r"os error (\d+)")

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


@dataclass(frozen=True)
class OutputKind:
    """What a command writes, recognised by its marker files: only such a directory is replaced.

    ``--overwrite`` replaces a model directory with a model directory, never a user's folder that
    happens to be named as the output.
    """

    name: str                  # "model directory", "run directory"...
    markers: tuple[str, ...]   # files every such directory holds

    def matches(self, directory: str | Path) -> bool:
        root = Path(directory)
        return all((root / marker).exists() for marker in self.markers)

    def describe(self) -> str:
        article = "an" if self.name[:1].lower() in "aeiou" else "a"
        return f"{article} {self.name} (no {', '.join(self.markers)})"


def kill_point(name: str) -> None:
    """Test hook: SIGKILL this process at the named point when ``LLMBRICKS_TEST_KILL_AT`` says so.

    ``LLMBRICKS_TEST_KILL_AT=checkpoint:renamed@2`` kills at the second time the store passes
    ``checkpoint:renamed``. Unset (always, outside the tests) it does nothing.
    """
    spec = os.environ.get(KILL_AT_ENV)
    if not spec:
        return
    point, _, nth = spec.partition("@")
    if point != name:
        return
    _kill_counts[name] = _kill_counts.get(name, 0) + 1
    if _kill_counts[name] == int(nth or 1):
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))


def write_error(path: str | Path, exc: BaseException) -> CheckpointError:
    """One line for a failed write of ``path``: the cause in words, whoever reported it.

    An ``OSError`` gives its errno; torch reports a full disk as ``enforce fail ... unexpected
    pos`` and safetensors as ``os error 28``: those are read back to the same causes.
    """
    code = _errno_of(exc, Path(path))
    if code in _CAUSES:
        cause = _CAUSES[code]
    elif code is not None:
        cause = os.strerror(code)
    else:
        detail = " ".join(str(exc).split())[:200] or type(exc).__name__
        cause = f"the write failed ({detail})"
    return CheckpointError(f"cannot write {path}: {cause}")


@contextlib.contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Turn a disk failure inside the block into ``write_error(path, ...)``; others pass."""
    try:
        yield
    except OSError as exc:
        raise write_error(path, exc) from None
    except Exception as exc:  # torch's and safetensors' own wrappers around a failed write
        if not _looks_like_io(exc):
            raise
        raise write_error(path, exc) from None


def check_links(root: str | Path) -> Path:
    """Refuse a run or model directory holding a symlink that leads outside it.

    Files inside such a directory are trusted to be its own; a link to elsewhere would make a
    read (or an append) touch a file the directory does not own. Links inside are fine.
    """
    root = Path(root)
    home = root.resolve()
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(folder) / name
            if not path.is_symlink():
                continue
            target = path.resolve()
            if target != home and home not in target.parents:
                raise CheckpointError(f"{path} is a symlink to {target}, outside {root}: llmbricks "
                                      "does not follow links out of a run or model directory; "
                                      "replace the link with the file itself")
    return root


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
    with writing(target):
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
    with writing(target):
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


def check_output_dir(directory: str | Path, *, overwrite: bool = False,
                     kind: OutputKind | None = None) -> Path:
    """Check ``directory`` can become a command's output, before any slow work.

    Refused, each in one line naming the path and the cause: a file in its place or in its
    parents, a directory the user cannot write to (permissions, read-only file system), a
    non-empty directory unless ``overwrite``, and, when ``kind`` is given, a non-empty directory
    that is not that kind of output even with ``overwrite``.
    """
    target = Path(directory)
    _check_parents(target)
    if target.exists() and not target.is_dir():
        raise CheckpointError(f"{target} exists and is not a directory: choose another path")
    if target.is_dir() and any(target.iterdir()):
        if kind is not None and not kind.matches(target):
            raise CheckpointError(f"{target} already exists and is not empty, and is not "
                                  f"{kind.describe()}: it is not replaced, even with --overwrite; "
                                  "choose another directory")
        if not overwrite:
            raise CheckpointError(f"{target} already exists and is not empty; choose another "
                                  "directory or overwrite it (--overwrite)")
    _check_writable(target)
    return target


@contextlib.contextmanager
def atomic_directory(directory: str | Path, *, overwrite: bool = False,
                     kind: OutputKind | None = None) -> Iterator[Path]:
    """Yield a fresh temporary directory beside ``directory``; on success it becomes ``directory``.

    A non-empty ``directory`` is refused unless ``overwrite`` (then it is replaced whole, when it
    is ``kind``'s output); an empty one is replaced. Write inside it with plain writes: before the rename every file gets
    the mode the umask gives (a library that wrote a 0600 file, as safetensors does, included)
    and is fsynced. On an exception the temporary directory is removed and ``directory`` is left
    as it was.
    """
    target = check_output_dir(directory, overwrite=overwrite, kind=kind)
    with writing(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = fresh_temp_dir(target.parent, target.name)
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


def _errno_of(exc: BaseException, path: Path) -> int | None:
    """The errno behind a failed write, looking through library wrappers and their causes."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            return seen.errno
        recorded = getattr(seen, "os_error", None)  # what _RecordingFile saw under torch.save
        if isinstance(recorded, OSError) and recorded.errno is not None:
            return recorded.errno
        found = _OS_ERROR_CODE.search(str(seen))
        if found:
            return int(found.group(1))
        if "no space left" in str(seen).lower():
            return errno.ENOSPC
        seen = seen.__cause__ or seen.__context__
    return errno.ENOSPC if _nearly_full(path) else None


def _looks_like_io(exc: BaseException) -> bool:
    """torch's ``enforce fail`` (a failed stream write) or a library's wrapped I/O error."""
    text = str(exc).lower()
    return any(word in text for word in ("enforce fail", "os error", "i/o error", "file write",
                                         "no space left", "error while serializing"))


def _nearly_full(path: Path) -> bool:
    """Whether the file system holding ``path`` has (almost) no room left."""
    for folder in (path, *path.parents):
        if folder.exists():
            try:
                info = os.statvfs(folder)
            except (OSError, AttributeError):  # Windows has no statvfs
                return False
            return info.f_bavail * info.f_frsize < 64 * 1024
    return False


def _check_parents(target: Path) -> None:
    """A file where a parent directory of ``target`` should be: name it."""
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise CheckpointError(f"cannot create {target}: {parent} is a file, not a "
                                      "directory; choose another path")
            return


def _check_writable(target: Path) -> None:
    """The nearest existing folder of ``target`` (and ``target``, if it is one) is writable."""
    folders = [target] if target.is_dir() else []
    folders += [next(p for p in target.parents if p.exists())] if not folders else [target.parent]
    for folder in folders:
        if os.access(folder, os.W_OK | os.X_OK):
            continue
        code = errno.EROFS if _read_only(folder) else errno.EACCES
        where = "" if folder == target else f" (in {folder})"
        raise CheckpointError(f"cannot write {target}{where}: {_CAUSES[code]}")


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & getattr(os, "ST_RDONLY", 1))
    except (OSError, AttributeError):
        return False


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
        raise write_error(target, exc) from None
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
