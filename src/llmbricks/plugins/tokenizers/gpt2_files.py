"""Reading and writing BPE vocabularies on disk: GPT-2's two files and tiktoken's ranks format.

A byte-level BPE vocabulary is a map ``token bytes -> rank``: the rank is the token id and the
order in which merges apply (lower first). Two file formats carry it:

- **GPT-2's release** (``encoder.json`` + ``vocab.bpe``). Tokens are written as *text* through a
  fixed byte -> printable-character table (``bytes_to_unicode``) so that the JSON and the merges
  file never hold spaces, control characters or invalid UTF-8: byte ``0x20`` (space) is written
  ``Ġ``, ``0x0A`` (newline) ``Ċ``. ``vocab.bpe`` is a ``#version`` line, then one merge per line
  (``left right``, in merge order); ``encoder.json`` maps each token's text to its id.
  GPT-2's ids are the ranks: the 256 single bytes first (in the table's order, not byte order),
  then merge ``i`` makes id ``256 + i``; ``<|endoftext|>`` (50256) is a special token, not a rank.
- **tiktoken's** ``.tiktoken`` text format: one token a line, ``base64(token bytes) SPACE rank``,
  in rank order. It needs no byte table and stores any vocabulary (ranks need not be dense).

These functions are shared by the ``bpe`` tokenizer (its ``gpt2_files`` option, its save/load) and
the ``tiktoken`` tokenizer (its ``file`` option).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path

from llmbricks.core.errors import DataError
from llmbricks.core.store.atomic import write_atomic

__all__ = [
    "GPT2_ENDOFTEXT",
    "bytes_to_unicode",
    "dump_tiktoken_ranks",
    "load_gpt2_ranks",
    "load_tiktoken_ranks",
    "unicode_to_bytes",
]

#: GPT-2's only special token; ``encoder.json`` lists it (id 50256) beside the ranks.
GPT2_ENDOFTEXT = "<|endoftext|>"


@cache
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's table from each byte value to one printable character standing for it.

    Bytes that are already printable, non-space Latin-1 characters (``!``..``~``, ``¡``..``¬``,
    ``®``..``ÿ``; 188 of them) stand for themselves. The other 68 (controls, space, DEL, NBSP,
    soft hyphen...) are given the characters ``U+0100``, ``U+0101``, ... in increasing byte
    order, which is why a space shows up as ``Ġ`` (U+0120) in GPT-2's files.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    spare = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + spare)
            spare += 1
    return table


@cache
def unicode_to_bytes() -> dict[str, int]:
    """The inverse of :func:`bytes_to_unicode`."""
    return {char: b for b, char in bytes_to_unicode().items()}


def _token_bytes(text: str, where: str) -> bytes:
    decoder = unicode_to_bytes()
    try:
        return bytes(decoder[ch] for ch in text)
    except KeyError as exc:
        raise DataError(f"{where}: token {text!r} holds {exc.args[0]!r}, which is not a character "
                        "of GPT-2's byte table (is this a GPT-2 style file?)") from None


def load_gpt2_ranks(encoder_json_path: str | Path, vocab_bpe_path: str | Path) -> dict[bytes, int]:
    """The ranks of GPT-2's vocabulary (``{token bytes: id}``), from its two released files.

    The ranks are rebuilt from the merges (single bytes in the table's order, then one rank per
    merge line) and checked against ``encoder.json``, so a mismatched pair of files is an error
    rather than a silently different tokenizer. Special tokens (``<|endoftext|>``) are not
    included: they are the caller's to add. For the real GPT-2 files this is exactly the
    ``mergeable_ranks`` of tiktoken's ``gpt2`` encoding (50,256 entries).
    """
    encoder_json_path, vocab_bpe_path = Path(encoder_json_path), Path(vocab_bpe_path)
    ranks: dict[bytes, int] = {bytes([b]): rank for rank, b in enumerate(bytes_to_unicode())}
    try:
        lines = vocab_bpe_path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read GPT-2 merges {vocab_bpe_path}: {exc}") from None
    for lineno, line in enumerate(lines, start=1):
        if not line or line.startswith("#version"):
            continue
        parts = line.split(" ")
        if len(parts) != 2:
            raise DataError(f"{vocab_bpe_path}:{lineno}: expected 'left right', got {line!r}")
        where = f"{vocab_bpe_path}:{lineno}"
        merged = _token_bytes(parts[0], where) + _token_bytes(parts[1], where)
        if merged in ranks:
            raise DataError(f"{where}: merge {line!r} makes a token that already has rank "
                            f"{ranks[merged]}")
        ranks[merged] = len(ranks)

    try:
        encoder = json.loads(encoder_json_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read GPT-2 vocabulary {encoder_json_path}: {exc}") from None
    if not isinstance(encoder, dict):
        raise DataError(f"{encoder_json_path}: expected a JSON object {{token: id}}")
    encoder.pop(GPT2_ENDOFTEXT, None)
    from_encoder = {_token_bytes(text, str(encoder_json_path)): rank for text, rank in encoder.items()}
    if from_encoder != ranks:
        differ = sorted(set(from_encoder.items()) ^ set(ranks.items()), key=lambda kv: kv[1])
        example = differ[0] if differ else ("?", "?")
        raise DataError(f"{encoder_json_path} and {vocab_bpe_path} disagree ({len(from_encoder)} vs "
                        f"{len(ranks)} tokens; first difference at {example!r}): they must come "
                        "from the same release")
    return ranks


def load_tiktoken_ranks(path: str | Path) -> dict[bytes, int]:
    """Read a ``.tiktoken`` ranks file: ``base64(token bytes) rank`` per line."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read ranks file {path}: {exc}") from None
    ranks: dict[bytes, int] = {}
    for lineno, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token, validate=True)] = int(rank)
        except (ValueError, binascii.Error):
            raise DataError(f"{path}:{lineno}: expected 'base64-token rank', got "
                            f"{line[:60]!r}") from None
    return ranks


def dump_tiktoken_ranks(ranks: Mapping[bytes, int], path: str | Path) -> None:
    """Write ``ranks`` in the ``.tiktoken`` format (by increasing rank), atomically.

    The file is written beside ``path`` and renamed over it once complete, so a reader never
    sees half a vocabulary.
    """
    path = Path(path)
    body = b"".join(base64.b64encode(token) + b" " + str(rank).encode() + b"\n"
                    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]))
    write_atomic(path, body)
