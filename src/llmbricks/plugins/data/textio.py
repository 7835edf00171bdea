"""Reading text files in bounded memory, with errors that name the file and the bad byte.

Files are read as bytes in chunks of ``CHUNK_BYTES`` and decoded with an incremental decoder, so
a multi-byte character split across two chunks decodes exactly and a 200 MB file is never held
whole. Newlines are passed through untouched (no ``\\r\\n`` translation): the text a source yields
is the file's text, character for character.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from pathlib import Path

from llmbricks.core.errors import DataError

#: Bytes read per step; a module constant so tests can shrink it to exercise chunk boundaries.
CHUNK_BYTES = 1 << 20

REPLACE_HINT = ("set `errors: replace` to decode bad bytes as U+FFFD, or set `encoding` to the "
                "file's encoding")


def check_encoding(name: str) -> str:
    """Validate a codec name (for pydantic validators): ``ValueError`` when Python lacks it."""
    try:
        codecs.lookup(name)
    except LookupError:
        raise ValueError(f"unknown text encoding {name!r} (e.g. utf-8, utf-8-sig, latin-1)") from None
    return name


def _buffered(decoder: codecs.IncrementalDecoder) -> int:
    """How many bytes the decoder holds from earlier input (an incomplete character)."""
    try:
        state = decoder.getstate()
    except Exception:  # a codec without state support buffers nothing we can see
        return 0
    return len(state[0]) if isinstance(state, tuple) and isinstance(state[0], bytes) else 0


def iter_text(path: str | Path, encoding: str = "utf-8", errors: str = "strict",
              hint: str = REPLACE_HINT) -> Iterator[str]:
    """Yield the decoded text of ``path`` in pieces of about ``CHUNK_BYTES`` bytes."""
    path = Path(path)
    try:
        decoder = codecs.getincrementaldecoder(encoding)(errors=errors)
    except LookupError:
        raise DataError(f"{path}: unknown text encoding {encoding!r}") from None
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    with f:
        consumed = 0  # bytes handed to the decoder before this chunk
        while True:
            try:
                chunk = f.read(CHUNK_BYTES)
            except OSError as exc:
                raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
            final = not chunk
            held = _buffered(decoder)
            try:
                text = decoder.decode(chunk, final=final)
            except UnicodeDecodeError as exc:
                # exc.start counts from the decoder's held bytes, which precede this chunk.
                offset = consumed - held + exc.start
                bad = exc.object[exc.start:exc.start + 1]
                shown = f", byte 0x{bad[0]:02x}" if bad else ""
                raise DataError(f"{path}: not valid {encoding} at byte offset {offset} "
                                f"({exc.reason}{shown}); {hint}") from None
            if text:
                yield text
            if final:
                return
            consumed += len(chunk)


def iter_lines(path: str | Path, encoding: str = "utf-8", errors: str = "strict",
               hint: str = REPLACE_HINT) -> Iterator[str]:
    """Yield the lines of ``path``, each with its ``\\n`` (the last one may lack it).

    Only ``\\n`` ends a line (``\\r\\n`` lines keep their ``\\r``), unlike ``str.splitlines``,
    which would also split on form feeds and Unicode separators inside a field.
    """
    partial: list[str] = []
    for text in iter_text(path, encoding, errors, hint):
        pieces = text.split("\n")
        if len(pieces) == 1:
            partial.append(text)
            continue
        partial.append(pieces[0])
        yield "".join(partial) + "\n"
        for piece in pieces[1:-1]:
            yield piece + "\n"
        partial = [pieces[-1]] if pieces[-1] else []
    if partial:
        yield "".join(partial)


def read_text(path: str | Path, encoding: str = "utf-8", errors: str = "strict",
              hint: str = REPLACE_HINT) -> str:
    """The whole text of a (small) file, with the same errors as ``iter_text``."""
    return "".join(iter_text(path, encoding, errors, hint))
