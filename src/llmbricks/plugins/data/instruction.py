"""Instruction data in the book's chapter-7 format: records with instruction, input, output."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from llmbricks.core.component import ParamsModel
from llmbricks.core.errors import InputError
from llmbricks.core.interfaces import DataSource
from llmbricks.core.store.text_input import check_parsed_text
from llmbricks.plugins.data import corpora, textio
from llmbricks.plugins.data.named import NamedFileParams, NamedFileSource

#: The string fields every record must have (``input`` may be empty).
FIELDS = ("instruction", "input", "output")
_HINT = "JSON files must be UTF-8"


def _check_record(record: Any, where: str) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise InputError(f"{where} is a JSON {type(record).__name__}, not an object with "
                        "'instruction', 'input' and 'output'")
    for key in FIELDS:
        if key not in record:
            raise InputError(f"{where} lacks the key {key!r} (every record needs 'instruction', "
                            "'input' and 'output' strings; 'input' may be empty)")
        if not isinstance(record[key], str):
            raise InputError(f"{where}: {key!r} is a JSON {type(record[key]).__name__}, "
                            "not a string")
        check_parsed_text(record[key], f"{where}, {key!r}")  # a "\ud800" escape is no text
    return dict(record)


def _json_error(path: Path, exc: json.JSONDecodeError, lineno: int | None = None) -> InputError:
    line = lineno if lineno is not None else exc.lineno
    return InputError(f"{path}: invalid JSON at line {line}, column {exc.colno}: {exc.msg}")


def load_instruction_records(path: str | Path,
                             format: Literal["auto", "json", "jsonl"] = "auto") -> list[dict[str, Any]]:
    """Read and validate every record of a JSON list or a JSONL file.

    Errors name the record (its 0-based index in a JSON list, its line in JSONL) and the
    missing or mistyped key. Extra keys (e.g. ``model_response``) are kept.
    """
    path = Path(path)
    if format == "auto":
        format = "jsonl" if path.suffix.lower() in (".jsonl", ".ndjson") else "json"
    records: list[dict[str, Any]] = []
    if format == "jsonl":
        for lineno, line in enumerate(textio.iter_lines(path, "utf-8", "strict", _HINT), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise _json_error(path, exc, lineno) from None
            records.append(_check_record(record, f"{path}, line {lineno}"))
        return records
    try:
        data = json.loads(textio.read_text(path, "utf-8", "strict", _HINT))
    except json.JSONDecodeError as exc:
        raise _json_error(path, exc) from None
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a JSON list of records with 'instruction', 'input' and "
                        f"'output', found a JSON {type(data).__name__}")
    return [_check_record(record, f"{path}: record {i}") for i, record in enumerate(data)]


def _require_records(records: list[dict[str, Any]], path: Path) -> list[dict[str, Any]]:
    """An empty file or list is the user's to fix (exit 2), said before any split or model."""
    if not records:
        raise InputError(f"{path}: holds 0 instruction records; the training split needs at "
                         "least one {instruction, input, output} record")
    return records


class InstructionJsonSource(DataSource):
    """Instruction records from your JSON or JSONL file (instruction, input, output strings)."""

    name = "instruction_json"
    records = "instruction"

    class Params(ParamsModel):
        path: str = Field("", description="a JSON list of records, or JSONL (one record per "
                                          "line), each with 'instruction', 'input', 'output'")
        format: Literal["auto", "json", "jsonl"] = Field(
            "auto", description="'auto' reads .jsonl/.ndjson as JSONL and anything else as JSON")

    params: Params

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if not self.params.path:
            raise InputError("the 'instruction_json' data source needs a `path` to a JSON or JSONL "
                            "file of {instruction, input, output} records")
        path = Path(self.params.path).expanduser()
        textio.require_file(path, "instruction_json `path`")
        yield from _require_records(load_instruction_records(path, self.params.format), path)

    def describe(self) -> str:
        return f"instruction records at {self.params.path or '(no path set)'}"


class InstructionDataSource(NamedFileSource):
    """The book's chapter-7 instruction data: 1,100 records of instruction, input and output."""

    name = "instruction_data"
    records = "instruction"
    remote = corpora.INSTRUCTION_DATA

    class Params(NamedFileParams):
        """Where to find instruction-data.json."""

    def __iter__(self) -> Iterator[dict[str, Any]]:
        path = self.resolve()
        yield from _require_records(load_instruction_records(path, "auto"), path)
