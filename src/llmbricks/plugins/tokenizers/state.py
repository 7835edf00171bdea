"""The saved state every tokenizer writes: ``tokenizer.json``, naming the component that wrote it.

``core.build.load_tokenizer`` reads the ``name`` to pick the class; the rest is the class's own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llmbricks.core.errors import DataError
from llmbricks.core.store.atomic import write_atomic

STATE_FILE = "tokenizer.json"


def write_state(directory: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` (which must hold ``name``) atomically into ``directory``."""
    write_atomic(Path(directory) / STATE_FILE, json.dumps(state, ensure_ascii=False, indent=1))


def read_state(directory: str | Path, name: str) -> dict[str, Any]:
    """Read the state a ``name`` tokenizer saved, with a one-line error when it cannot."""
    path = Path(directory) / STATE_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot load '{name}' tokenizer from {path}: {exc}") from None
