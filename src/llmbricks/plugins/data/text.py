"""Plain text from your own files: one file, a directory tree or a glob."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from llmbricks.core.component import ParamsModel
from llmbricks.core.errors import InputError
from llmbricks.core.interfaces import DataSource
from llmbricks.plugins.data import textio

_GLOB_CHARS = "*?["


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _walk(directory: Path) -> list[Path]:
    """Every non-hidden file under ``directory`` (hidden folders are not entered), sorted."""
    found: list[Path] = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = [d for d in dirs if not _is_hidden(d)]
        found.extend(Path(root) / f for f in files if not _is_hidden(f))
    return sorted(p for p in found if p.is_file())  # Paths compare by their components


def expand_paths(spec: str) -> list[Path]:
    """The files a ``path`` param names, in reading order; ``InputError`` (exit 2) when none."""
    if not spec:
        raise InputError("the 'text' data source needs a `path`: a file, a directory or a glob "
                        "such as 'corpus/*.txt'")
    path = Path(spec).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        files = _walk(path)
        if not files:
            raise InputError(f"{path}: the directory holds no files (hidden ones are skipped)")
        return files
    if any(c in spec for c in _GLOB_CHARS):
        found: set[Path] = set()
        for match in glob.glob(os.path.expanduser(spec), recursive=True):
            match_path = Path(match)
            if match_path.is_dir():
                found.update(_walk(match_path))
            elif match_path.is_file():
                found.add(match_path)
        if not found:
            raise InputError(f"no file matches the glob {spec!r} (relative to {Path.cwd()})")
        return sorted(found)  # by path components, as for a directory; each file once
    raise InputError(f"{path} does not exist (the 'text' source takes a file, a directory or a glob)")


class TextSource(DataSource):
    """Text from your files: a file, every file under a directory, or a glob, in sorted order.

    Files are read in chunks of about 1 MiB and decoded incrementally, so a corpus of any size
    streams in bounded memory and the yielded pieces concatenate to exactly the files' text
    (newlines untouched). Files are joined by ``separator``, which is empty by default: nothing
    is inserted between one file's last character and the next file's first, so add a newline
    or an end-of-text marker there if your documents need one.
    """

    name = "text"
    records = "text"

    class Params(ParamsModel):
        path: str = Field("", description="a file, a directory (every non-hidden file under it, "
                                          "recursively, sorted) or a glob ('data/**/*.txt')")
        encoding: str = Field("utf-8", description="text encoding of the files")
        errors: Literal["strict", "replace"] = Field(
            "strict", description="'strict' stops at an undecodable byte with its file and offset; "
                                  "'replace' decodes it as U+FFFD")
        separator: str = Field("", description="text inserted between two files (e.g. '\\n\\n' "
                                               "or '<|endoftext|>'); nothing by default")

        @field_validator("encoding")
        @classmethod
        def _known_encoding(cls, value: str) -> str:
            return textio.check_encoding(value)

    params: Params

    def files(self) -> list[Path]:
        """The files this source reads, in order."""
        return expand_paths(self.params.path)

    def __iter__(self) -> Iterator[str]:
        files = self.files()
        what = str(files[0]) if len(files) == 1 else f"{self.params.path} ({len(files)} files)"
        yield from textio.require_text(self._pieces(files), what)

    def _pieces(self, files: list[Path]) -> Iterator[str]:
        p = self.params
        for i, file in enumerate(files):
            if i and p.separator:
                yield p.separator
            yield from textio.iter_text(file, p.encoding, p.errors)

    def describe(self) -> str:
        return f"text files at {self.params.path or '(no path set)'}"
