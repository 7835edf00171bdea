"""Text a user hands in (a file, standard input, a command-line argument), checked as UTF-8.

Every way text enters is held to one policy: it is UTF-8, or it is refused with one line naming
where it came from, the byte offset and the bad bytes. Nothing is silently replaced:

- ``read_text`` / ``decode_text``: strict UTF-8 from a file or from raw bytes (standard input).
  A leading UTF-8 byte-order mark (``EF BB BF``, which some Windows editors write) is dropped: it
  marks the encoding and is not part of the text.
- ``check_text``: a ``str`` that came through Python's ``surrogateescape`` (``sys.argv``, and
  ``sys.stdin`` under some locales) carries each undecodable byte as a lone surrogate
  (U+DC80..U+DCFF), which would fail much later, inside a tokenizer or a JSON writer. This finds
  the first one and reports the original byte and its offset.

Errors are ``InputError`` (exit 2): the input must change before anything can run.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError

BOM = "\ufeff"
#: How to fix a text that is not UTF-8, shown after the offset.
REENCODE_HINT = "re-encode it as UTF-8 (e.g. `iconv -f latin1 -t utf-8 IN > OUT`)"
ARG_HINT = "pass UTF-8 text (check your terminal's encoding, e.g. `locale`)"
_SHOWN_BYTES = 4


def show_bytes(data: bytes) -> str:
    """``0xff 0xfe``: the first few bytes of ``data`` in hex, for a message."""
    shown = " ".join(f"0x{b:02x}" for b in data[:_SHOWN_BYTES])
    return shown + (" ..." if len(data) > _SHOWN_BYTES else "")


def utf8_error(where: str, offset: int, bad: bytes, reason: str = "", hint: str = REENCODE_HINT,
               encoding: str = "UTF-8") -> InputError:
    """The one-line error for text that does not decode: where, byte offset, bytes, fix."""
    detail = show_bytes(bad) + (f": {reason}" if reason else "")
    return InputError(f"{where}: invalid {encoding} at byte offset {offset} ({detail}); {hint}")


def decode_text(data: bytes, source: str, hint: str = REENCODE_HINT) -> str:
    """Strict UTF-8 decoding of ``data`` (from ``source``, named in errors); a leading BOM dropped."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise utf8_error(source, exc.start, exc.object[exc.start:exc.end], exc.reason, hint) from None
    return text.removeprefix(BOM)


def read_text(path: str | Path, source: str | None = None) -> str:
    """The whole text of the file at ``path``, strict UTF-8, a leading BOM dropped.

    ``source`` says where the path came from (``--prompt-file``, ``data.source.path``) and is
    named in errors beside the path. Missing files, directories and unreadable files are
    ``InputError`` too, each in one line.
    """
    path = Path(path)
    where = f"{path} ({source})" if source else str(path)
    if path.is_dir():
        raise InputError(f"{where}: is a directory, not a text file")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{where}: no such file") from None
    except OSError as exc:
        raise InputError(f"{where}: cannot read it ({exc.strerror or exc})") from None
    return decode_text(data, where)


def _first_surrogate(text: str) -> int:
    """The index of the first lone surrogate in ``text``, or -1."""
    for i, ch in enumerate(text):
        if "\ud800" <= ch <= "\udfff":
            return i
    return -1


def check_parsed_text(text: str, source: str) -> str:
    """``text`` unchanged unless it holds a lone surrogate, reported by character position.

    For strings parsed from a format with escapes (JSON's ``"\\udcff"``): there a surrogate is
    no undecodable byte, so no byte offset is claimed.
    """
    i = _first_surrogate(text)
    if i < 0:
        return text
    raise InputError(f"{source}: lone surrogate U+{ord(text[i]):04X} at character {i} is not text "
                     "and cannot be encoded as UTF-8 (a \\u escape of half a pair?); remove it")


def check_text(text: str, source: str) -> str:
    """``text`` unchanged when it encodes as UTF-8; else ``InputError`` naming the byte offset.

    A surrogate in U+DC80..U+DCFF is an undecodable byte kept by ``surrogateescape``: the error
    gives that byte and its offset in the original bytes. Any other lone surrogate (from a JSON
    ``\\ud800`` escape, say) is reported by character position.
    """
    i = _first_surrogate(text)
    if i < 0:
        return text
    if not "\udc80" <= text[i] <= "\udcff":
        return check_parsed_text(text, source)
    end = i
    while end < len(text) and "\udc80" <= text[end] <= "\udcff":
        end += 1
    offset = len(text[:i].encode("utf-8"))  # text[:i] holds no surrogate: its bytes are the original's
    bad = text[i:end].encode("utf-8", "surrogateescape")
    raise utf8_error(source, offset, bad, hint=ARG_HINT)
