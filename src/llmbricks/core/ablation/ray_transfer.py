"""Moving a run directory between the driver and a Ray node, as one ``.tar.gz`` in memory.

A cluster's nodes need not share a filesystem: the driver ships a resumed run's partial directory
to the node that trains it, and the node sends the finished directory back. Bytes travel as Ray
task arguments and return values, so no other channel (ssh, a bucket) is needed.
"""

from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path


def pack(directory: Path) -> bytes:
    """``directory``'s files as a gzipped tar, with names relative to it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as tar:
        for path in sorted(directory.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(directory)), recursive=False)
    return buffer.getvalue()


def unpack(data: bytes, directory: Path) -> None:
    """Extract ``pack``'s bytes into ``directory`` (created if needed).

    The ``data`` filter refuses absolute names, ``..`` and links out of ``directory``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        tar.extractall(directory, filter="data")


def replace_with(data: bytes, directory: Path) -> None:
    """Make ``directory`` hold exactly ``pack``'s bytes: unpack beside it, then swap.

    A failure while unpacking leaves the old directory whole (a resumed run's checkpoints).
    """
    incoming = directory.with_name(f".{directory.name}.incoming")
    shutil.rmtree(incoming, ignore_errors=True)
    unpack(data, incoming)
    shutil.rmtree(directory, ignore_errors=True)
    incoming.rename(directory)
