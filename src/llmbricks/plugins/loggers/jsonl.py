"""metrics.jsonl: the run's durable record, one JSON object per training event."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import IO, Any

from pydantic import Field

from llmbricks.core.component import ParamsModel
from llmbricks.core.interfaces import Logger

#: Keys written right after ``event``, when present, so ``grep``/``jq`` readers find them first.
LEADING_KEYS = ("step", "time")


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data; nan and inf become ``None`` so strict parsers accept it.

    Python's ``json`` would write ``NaN``, which is not JSON: ``jq``, JavaScript and most other
    parsers reject the whole line.
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    item = getattr(value, "item", None)  # 0-d tensors and numpy scalars
    if callable(item):
        try:
            return jsonable(item())
        except (TypeError, ValueError):
            pass
    return str(value)


def event_record(event: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The line's object: ``event`` first, then ``step`` and ``time``, then the rest as given."""
    record: dict[str, Any] = {"event": event}
    record.update((k, fields[k]) for k in LEADING_KEYS if k in fields)
    record.update((k, v) for k, v in fields.items() if k not in record)
    return jsonable(record)


class JsonlLogger(Logger):
    """Every event as one JSON line in the run's metrics.jsonl."""

    name = "jsonl"

    class Params(ParamsModel):
        file: str = Field("metrics.jsonl",
                          description="file name inside the run directory (or an absolute path)")

    def __init__(self, params: Params) -> None:
        super().__init__(params)
        self._fh: IO[str] | None = None
        self.path: Path | None = None

    def log(self, event: str, **fields: Any) -> None:
        if event == "start" and fields.get("run_dir") is not None:
            self._open(Path(fields["run_dir"]) / self.params.file)
        if self._fh is None:
            return  # no run directory yet: nowhere to write
        self._fh.write(json.dumps(event_record(event, fields), allow_nan=False) + "\n")
        self._fh.flush()  # a run killed right after this keeps the line

    def _open(self, path: Path) -> None:
        self.close()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = path.open("a", encoding="utf-8")
        self.path = path
        if self._fh.tell() > 0 and not _ends_with_newline(path):
            self._fh.write("\n")  # a killed run's half line must not swallow our first one

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as fh:
        fh.seek(-1, 2)
        return fh.read(1) == b"\n"
