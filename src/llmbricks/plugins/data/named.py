"""Named files: a source that knows its canonical URL and sha256 and finds the file itself.

Resolution (``core.store.datafiles.resolve_file``): the ``path`` param, ``$LLMBRICKS_DATA_DIR``, the
user cache, then a verified download unless ``download`` is false or ``$LLMBRICKS_OFFLINE`` is set.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field

from llmbricks.core.component import ParamsModel
from llmbricks.core.interfaces import DataSource
from llmbricks.core.store.datafiles import RemoteFile, candidates, resolve_file


class NamedFileParams(ParamsModel):
    path: str | None = Field(
        None, description="read this file instead of the named one (your own copy; it is not held "
                          "to the canonical sha256)")
    download: bool = Field(
        True, description="download the file from its canonical URL (verified by sha256) when it "
                          "is not in $LLMBRICKS_DATA_DIR or the cache; $LLMBRICKS_OFFLINE=1 also "
                          "turns downloads off")


class NamedFileSource(DataSource):
    """Base of the sources that read one named file (not registered itself)."""

    #: The canonical file: URL, sha256, size (see ``corpora.py``).
    remote: ClassVar[RemoteFile]
    Params: ClassVar[type[NamedFileParams]] = NamedFileParams
    params: NamedFileParams

    def resolve(self) -> Path:
        """The local path of the file, downloading (and verifying) it if needed and allowed."""
        return resolve_file(self.remote, explicit=self.params.path,
                            download=None if self.params.download else False)

    def describe(self) -> str:
        # Cheap and offline: says where the file would be read from without hashing or fetching.
        if self.params.path is not None:
            return f"{self.name}: {self.params.path}"
        for path in candidates(self.remote):
            if path.is_file():
                return f"{self.name}: {path} (canonical {self.remote.url})"
        return f"{self.name}: {self.remote.url}"
