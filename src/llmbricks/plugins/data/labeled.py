"""Labeled texts from your CSV, TSV or JSONL file, for classification finetuning."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from llmbricks.core.component import ParamsModel
from llmbricks.core.errors import InputError, did_you_mean
from llmbricks.core.interfaces import DataSource
from llmbricks.plugins.data import textio

SUFFIX_FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
Column = str | int


class LabeledTextSource(DataSource):
    """(text, label) rows from a CSV, TSV or JSONL file with configurable columns.

    CSV follows the usual dialect (double-quoted fields may hold commas and newlines). TSV is
    the plain IANA form: fields split at tabs, quote characters are ordinary text. Columns are
    header names, or 0-based numbers (needed when ``header`` is false). Labels are the cell text
    for CSV/TSV and the JSON value (a string or an integer) for JSONL. Blank lines are skipped.
    """

    name = "labeled_text"
    records = "labeled"

    class Params(ParamsModel):
        path: str = Field("", description="the CSV, TSV or JSONL file")
        format: Literal["auto", "csv", "tsv", "jsonl"] = Field(
            "auto", description="'auto' picks from the suffix: .csv, .tsv/.tab, .jsonl/.ndjson")
        text_column: Column = Field("text", description="column (header name or 0-based number) "
                                                        "or JSONL key holding the text")
        label_column: Column = Field("label", description="column (header name or 0-based number) "
                                                          "or JSONL key holding the label")
        header: bool = Field(True, description="CSV/TSV: the first row names the columns")
        encoding: str = Field("utf-8", description="text encoding of the file")
        errors: Literal["strict", "replace"] = Field(
            "strict", description="'replace' decodes undecodable bytes as U+FFFD")

        @field_validator("encoding")
        @classmethod
        def _known_encoding(cls, value: str) -> str:
            return textio.check_encoding(value)

    params: Params

    def _path_and_format(self) -> tuple[Path, str]:
        p = self.params
        if not p.path:
            raise InputError("the 'labeled_text' data source needs a `path` to a CSV, TSV or JSONL file")
        path = Path(p.path).expanduser()
        textio.require_file(path, "labeled_text `path`")
        fmt = p.format
        if fmt == "auto":
            found = SUFFIX_FORMATS.get(path.suffix.lower())
            if found is None:
                raise InputError(f"{path}: cannot tell the format from the suffix "
                                f"{path.suffix or '(none)'!r}; set `format: csv`, `tsv` or `jsonl`")
            fmt = found
        return path, fmt

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        path, fmt = self._path_and_format()
        rows = self._jsonl(path) if fmt == "jsonl" else self._delimited(path, fmt)
        count = 0
        for row in rows:
            count += 1
            yield row
        if count == 0:
            raise InputError(f"{path}: the file holds no labeled rows (0 rows after the header "
                             "and blank lines); each split needs at least one row of every class")

    def _delimited(self, path: Path, fmt: str) -> Iterator[tuple[str, str]]:
        p = self.params
        lines = textio.iter_lines(path, p.encoding, p.errors)
        if fmt == "tsv":
            reader = csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)
        else:
            reader = csv.reader(lines)
        names: list[str] | None = None
        indices: tuple[int, int] | None = None
        try:
            for row in reader:
                if not row or row == [""]:
                    continue
                if p.header and names is None:
                    names = row
                    continue
                if indices is None:
                    indices = (self._index(p.text_column, "text_column", names, path),
                               self._index(p.label_column, "label_column", names, path))
                width = max(indices) + 1
                if len(row) < width:
                    raise InputError(f"{path}, line {reader.line_num}: the row has {len(row)} "
                                    f"field(s) but the columns need {width}; is the {fmt.upper()} "
                                    "delimiter right?")
                text, label = row[indices[0]], row[indices[1]]
                if not label:
                    raise InputError(f"{path}, line {reader.line_num}: empty label")
                yield text, label
        except csv.Error as exc:
            raise InputError(f"{path}, line {reader.line_num}: malformed {fmt.upper()}: {exc}") from None

    @staticmethod
    def _index(column: Column, param: str, names: list[str] | None, path: Path) -> int:
        if isinstance(column, int):
            if column < 0:
                raise InputError(f"{param} {column} must be a 0-based column number")
            return column
        if names is None:
            raise InputError(f"{path}: {param} {column!r} is a name but `header` is false; give a "
                            "0-based column number")
        if column not in names:
            raise InputError(f"{path}: no column {column!r} for {param}"
                            f"{did_you_mean(column, names)} (the header has {', '.join(names)})")
        return names.index(column)

    def _jsonl(self, path: Path) -> Iterator[tuple[str, Any]]:
        p = self.params
        for key, param in ((p.text_column, "text_column"), (p.label_column, "label_column")):
            if not isinstance(key, str):
                raise InputError(f"{param} must name a key for JSONL, not the number {key}")
        for lineno, line in enumerate(textio.iter_lines(path, p.encoding, p.errors), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}, line {lineno}: invalid JSON at column {exc.colno}: "
                                f"{exc.msg}") from None
            if not isinstance(row, dict):
                raise InputError(f"{path}, line {lineno}: expected a JSON object, found a "
                                f"{type(row).__name__}")
            for key in (p.text_column, p.label_column):
                if key not in row:
                    raise InputError(f"{path}, line {lineno}: no key {key!r}"
                                    f"{did_you_mean(str(key), row)} (keys: {', '.join(row)})")
            text, label = row[p.text_column], row[p.label_column]
            if not isinstance(text, str):
                raise InputError(f"{path}, line {lineno}: {p.text_column!r} is a JSON "
                                f"{type(text).__name__}, not a string")
            if isinstance(label, bool) or not isinstance(label, str | int):
                raise InputError(f"{path}, line {lineno}: label {p.label_column!r} must be a string "
                                f"or an integer, not a JSON {type(label).__name__}")
            yield text, label

    def describe(self) -> str:
        return f"labeled rows at {self.params.path or '(no path set)'}"
