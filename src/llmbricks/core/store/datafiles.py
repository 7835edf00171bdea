"""Named data files: resolution without network first, then a verified, atomic download.

Resolution order: an explicit path, ``$LLMBRICKS_DATA_DIR``, the user cache
(``$LLMBRICKS_CACHE_DIR``, default ``~/.cache/llmbricks``), then a download from the canonical
URL, verified by sha256. A download writes to a temporary file beside the target and renames it
only when complete and verified, so an interrupted transfer never leaves a partial file.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import io
import os
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError, InputError, LlmbricksError
from .atomic import atomic_path

DATA_DIR_ENV = "LLMBRICKS_DATA_DIR"
CACHE_DIR_ENV = "LLMBRICKS_CACHE_DIR"
OFFLINE_ENV = "LLMBRICKS_OFFLINE"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class RemoteFile:
    """A file the project knows by name: where it lives canonically and what it hashes to.

    ``member`` names the file inside a zip archive at ``url`` (the sha256 is the member's).
    """

    filename: str
    url: str
    sha256: str
    size: int | None = None
    member: str | None = None


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_DIR_ENV) or Path.home() / ".cache" / "llmbricks")


def offline() -> bool:
    """Whether ``$LLMBRICKS_OFFLINE`` turns downloads off (any value but empty/0/false/no/off)."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(path: Path, remote: RemoteFile) -> Path:
    actual = sha256_file(path)
    if actual != remote.sha256:
        raise DataError(f"{path}: sha256 mismatch for {remote.filename}: expected {remote.sha256}, "
                        f"got {actual}; delete or replace the file")
    return path


def _verify_download(path: Path, remote: RemoteFile) -> None:
    # The temporary file is deleted on failure, so the message names the URL, not that file.
    actual = sha256_file(path)
    if actual != remote.sha256:
        what = f"{remote.url} (member {remote.member})" if remote.member else remote.url
        raise DataError(f"sha256 mismatch for {remote.filename} downloaded from {what}: "
                        f"expected {remote.sha256}, got {actual}; nothing was saved")


def candidates(remote: RemoteFile) -> list[Path]:
    """Where a named file is looked for before any download, in order."""
    found = []
    data_dir = os.environ.get(DATA_DIR_ENV)
    if data_dir:
        found.append(Path(data_dir) / remote.filename)
    found.append(cache_dir() / remote.filename)
    return found


def resolve_file(remote: RemoteFile, explicit: str | Path | None = None, *,
                 download: bool | None = None) -> Path:
    """The local path of a named file: explicit path, data dir, cache, or a verified download."""
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            problem = "is not a file" if path.exists() else "does not exist"
            raise InputError(f"{remote.filename}: the given path {path} {problem}")
        return path  # the user's own file: not held to the canonical checksum
    for path in candidates(remote):
        if path.is_file():
            return _verify(path, remote)
    reason = "downloads are off (download: false)"
    if download is None:
        download = not offline()
        reason = f"downloads are off ({OFFLINE_ENV} is set)"
    places = " or ".join(str(p.parent) for p in candidates(remote))
    if not download:
        raise DataError(f"{remote.filename} not found: place it in {places} (or set "
                        f"${DATA_DIR_ENV}); {reason}")
    target = cache_dir() / remote.filename
    try:
        return fetch(remote, target)
    except DataError as exc:
        raise DataError(f"{remote.filename} not found locally and the download failed: {exc}; "
                        f"place the file in {places} (or set ${DATA_DIR_ENV})") from None


def fetch(remote: RemoteFile, target: str | Path, *, timeout: float = 60.0) -> Path:
    """Download ``remote.url`` to ``target``, verify it, and rename it into place atomically."""
    target = Path(target)
    with contextlib.ExitStack() as stack:
        try:
            tmp = stack.enter_context(atomic_path(target))
        except (OSError, LlmbricksError) as exc:  # the atomic writer names the path's problem
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise DataError(f"cannot write to {target.parent} ({reason}); set "
                            f"${CACHE_DIR_ENV} to a writable directory") from None
        with open(tmp, "wb") as out:
            _download(remote.url, out, timeout)
        if remote.member is not None:
            _extract_member(tmp, remote.member)
        _verify_download(tmp, remote)
    return target


def _download(url: str, out: io.BufferedWriter, timeout: float) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - fixed URLs
            expected = response.headers.get("Content-Length")
            received = 0
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                received += len(chunk)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(exc, urllib.error.HTTPError):
            reason = f"HTTP {exc.code} {reason}"
        raise DataError(f"download of {url} failed: {reason}") from None
    if expected is not None and received != int(expected):
        raise DataError(f"download of {url} was interrupted: got {received} of {expected} bytes")


def _extract_member(archive: Path, member: str) -> None:
    """Replace the downloaded zip at ``archive`` with one of its members."""
    try:
        with zipfile.ZipFile(archive) as zf:
            data = zf.read(member)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise DataError(f"cannot extract {member} from the downloaded archive: {exc}") from None
    archive.write_bytes(data)  # the download's own temporary file, not yet renamed in
