"""Reading text files in bounded memory, with errors that name the file and the bad byte.

Files are read as bytes in chunks of ``CHUNK_BYTES`` and decoded with an incremental decoder, so
a multi-byte character split across two chunks decodes exactly and a 200 MB file is never held
whole. Newlines are passed through untouched (no ``\\r\\n`` translation): the text a source yields
is the file's text, character for character, with two rules:

- a UTF-8 byte-order mark at the start of a file is dropped (it marks the encoding, it is not
  text), as ``utf-8-sig`` would;
- a NUL character is refused with its byte offset: text files hold none, so the file is binary
  (or UTF-16 read as UTF-8) and training on it would only teach the model noise.

Undecodable bytes stop the read with the file, byte offset and bytes (``InputError``, exit 2),
unless the caller asked for ``errors="replace"``.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable, Iterator
from pathlib import Path

from llmbricks.core.errors import DataError, InputError
from llmbricks.core.store.text_input import BOM, utf8_error

#: Bytes read per step; a module constant so tests can shrink it to exercise chunk boundaries.
CHUNK_BYTES = 1 << 20

REPLACE_HINT = ("re-encode the file as UTF-8, set the source's `encoding` to the file's (e.g. "
                "latin-1), or set `errors: replace` to decode bad bytes as U+FFFD")


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
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    codec = codecs.lookup(encoding).name
    utf8 = codec == "utf-8"
    wide = codec.startswith(("utf-16", "utf-32"))  # a zero byte is not a NUL character there
    with f:
        consumed = 0  # bytes handed to the decoder before this chunk
        first = True  # no text yielded yet: a BOM may still come
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
                raise utf8_error(str(path), offset, exc.object[exc.start:exc.end], exc.reason,
                                 hint, encoding.upper()) from None
            if first and utf8 and text:
                text = text.removeprefix(BOM)
                first = False
            if "\x00" in text:
                raise _nul_error(path, chunk, consumed, wide)
            if text:
                yield text
            if final:
                return
            consumed += len(chunk)


def _nul_error(path: Path, chunk: bytes, consumed: int, wide: bool) -> InputError:
    """The error for a NUL character decoded from ``chunk`` (which starts ``consumed`` bytes in)."""
    at = chunk.find(b"\x00")
    where = "" if wide or at < 0 else f" at byte offset {consumed + at}"
    return InputError(f"{path}: a NUL character{where}: this is a binary file (or UTF-16), not "
                      "text; give a text file, or set `encoding` to the file's encoding")


def require_file(path: Path, param: str) -> Path:
    """``path`` when it is a file; else ``InputError`` saying what it is instead (exit 2)."""
    if path.is_file():
        return path
    problem = "is a directory, not a file" if path.is_dir() else "does not exist"
    raise InputError(f"{path} {problem} ({param})")


def require_text(pieces: Iterable[str], what: str) -> Iterator[str]:
    """Pass ``pieces`` through; ``InputError`` at the end when they held no text at all.

    An empty corpus would otherwise fail later and elsewhere (a tokenizer with no vocabulary, a
    model of vocab_size 0); said here, the message names the files.
    """
    empty = True
    for piece in pieces:
        empty = empty and not piece
        yield piece
    if empty:
        raise InputError(f"{what}: the corpus is empty (0 characters); training needs at least "
                         "model.context_length + 1 tokens of text")


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
