"""Byte-level BPE, trained from scratch (or loaded from GPT-2's files), encoded by tiktoken.

Training
--------
Text is split into *pre-tokens* by a regex (GPT-2's by default), after cutting special tokens out
so that they never take part in a merge. Identical pre-tokens are counted once with their
multiplicity; each unique pre-token is a list of token ids, starting from its UTF-8 bytes. The
trainer keeps, for every adjacent pair, its weighted count and the set of words it occurs in;
a merge rewrites only those words and adjusts only the counts of the pairs it touches, and a
heap with lazy invalidation yields the next best pair. The whole corpus is counted once, never
per merge. Ties are broken deterministically: highest count first, then the lexicographically
smallest ``(left bytes, right bytes)``.

tiktoken, which encodes, names tokens by their bytes. A merge whose result already exists as a
token (``"ab" + "c"`` after ``"a" + "bc"``) therefore reuses that token instead of adding a second
one; it takes no vocabulary slot. Single bytes have ranks 0..255 (byte order), merged tokens
follow in the order they were learned, and special tokens take the ids right after them.

Files (``save``/``load``)
-------------------------
A saved tokenizer is a folder with two files, each written atomically (temp file + rename):

``tokenizer.json``
    ``{"name": "bpe", "format_version": 1, "params": {...every parameter...},
    "vocab_size": N, "special_tokens": {"<|endoftext|>": id, ...}, "ranks_file": "ranks.tiktoken"}``.
``ranks.tiktoken``
    the vocabulary in tiktoken's text format: one token a line, ``base64(token bytes) rank``, by
    increasing rank (ranks ``0..n-1``, dense; see ``gpt2_files``). Readable by
    ``tiktoken.load.load_tiktoken_bpe``.

``load`` rebuilds the tokenizer from these two files only; a tokenizer made from ``gpt2_files``
is saved with its ranks too, so loading it does not need GPT-2's files.
"""

from __future__ import annotations

import heapq
import json
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import regex
import tiktoken
from pydantic import Field, field_validator, model_validator

from llmbricks.core.component import ParamsModel
from llmbricks.core.errors import DataError
from llmbricks.core.interfaces import Tokenizer
from llmbricks.core.store.atomic import write_atomic
from llmbricks.plugins.tokenizers.gpt2_files import (
    dump_tiktoken_ranks,
    load_gpt2_ranks,
    load_tiktoken_ranks,
)

__all__ = ["BPETokenizer", "GPT2_PATTERN", "learn_merges", "pretokenize"]

log = logging.getLogger(__name__)

STATE_FILE = "tokenizer.json"
RANKS_FILE = "ranks.tiktoken"
FORMAT_VERSION = 1
ENDOFTEXT = "<|endoftext|>"
#: GPT-2's pre-tokenizer (tiktoken's r50k): contractions, letters, digits, other symbols (each
#: with at most one leading space), and whitespace runs that leave one space for the next word.
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
_BYTE_RANKS = {bytes([b]): b for b in range(256)}
#: Ranks in GPT-2's vocabulary (its special token comes after them).
GPT2_N_RANKS = 50256


# --- training ---------------------------------------------------------------------------------


def pretokenize(texts: Iterable[str], pattern: str = GPT2_PATTERN,
                special_tokens: Iterable[str] = (), chunk_chars: int = 1 << 20) -> Counter[str]:
    """Count the pre-tokens of ``texts``, streaming: special tokens are cut out and dropped.

    A text longer than ``chunk_chars`` is matched piece by piece (so memory stays bounded), cut
    only after a single newline between a non-space and a letter or digit: no match of GPT-2's
    (or cl100k's, o200k's) pattern spans such a point, so the counts are those of the whole text.
    """
    if isinstance(texts, str):
        texts = [texts]
    splitter = regex.compile(pattern)
    specials = sorted(set(special_tokens), key=len, reverse=True)
    cutter = regex.compile("|".join(regex.escape(s) for s in specials)) if specials else None
    counts: Counter[str] = Counter()
    for text in texts:
        if not isinstance(text, str):
            raise DataError(f"BPE training expects texts (str), got {type(text).__name__}")
        for part in cutter.split(text) if cutter is not None else (text,):
            for piece in _pieces(part, chunk_chars):
                counts.update(splitter.findall(piece))
    return counts


#: Where a long text may be cut: a lone newline between a non-space and a letter or digit.
_SAFE_CUT = regex.compile(r"(?<=\S)\n(?=[\p{L}\p{N}])")


def _pieces(text: str, size: int) -> Iterator[str]:
    start = 0
    while len(text) - start > size:
        cut = _SAFE_CUT.search(text, start + size)
        if cut is None:
            break
        yield text[start:cut.end()]
        start = cut.end()
    yield text[start:]


def learn_merges(word_counts: Mapping[bytes, int], vocab_size: int) -> list[tuple[bytes, bytes]]:
    """Learn merges until the vocabulary (256 bytes + distinct merged tokens) has ``vocab_size``
    tokens, or no pair is left.

    ``word_counts`` maps each unique pre-token (its bytes) to how often it occurs. Returns the
    merges in order as ``(left bytes, right bytes)``; a merge whose result already is a token
    reuses it, so it does not count towards ``vocab_size``.
    """
    token_bytes: list[bytes] = [bytes([b]) for b in range(256)]
    token_id: dict[bytes, int] = {t: i for i, t in enumerate(token_bytes)}
    merges: list[tuple[bytes, bytes]] = []
    if vocab_size <= 256:
        return merges

    # A pair (a, b) is the single int a << shift | b: cheaper to hash than a tuple.
    shift = max(vocab_size.bit_length(), 9)
    mask = (1 << shift) - 1
    words: list[list[int]] = []
    counts: list[int] = []
    stats: dict[int, int] = {}
    where: defaultdict[int, set[int]] = defaultdict(set)
    for word, n in word_counts.items():
        if len(word) < 2 or n <= 0:
            continue
        wi = len(words)
        ids = list(word)
        words.append(ids)
        counts.append(n)
        prev = ids[0]
        for cur in ids[1:]:
            key = prev << shift | cur
            stats[key] = stats.get(key, 0) + n
            where[key].add(wi)
            prev = cur

    # Max-heap through negated counts; ties go to the smallest (left bytes, right bytes).
    # Entries go stale when a count changes: a popped entry is checked against ``stats`` and
    # pushed back with the current count if that count dropped. Counts only rise for pairs
    # touched by a merge, and those get a fresh entry.
    heap = [(-n, token_bytes[k >> shift], token_bytes[k & mask], k) for k, n in stats.items()]
    heapq.heapify(heap)
    heappop, heappush = heapq.heappop, heapq.heappush

    n_tokens = 256
    while n_tokens < vocab_size and heap:
        neg, left, right, pair = heappop(heap)
        current = stats.get(pair, 0)
        if current != -neg:
            if 0 < current < -neg:
                heappush(heap, (-current, left, right, pair))
            continue
        a, b = pair >> shift, pair & mask
        merged = left + right
        c = token_id.get(merged)
        if c is None:
            c = len(token_bytes)
            token_bytes.append(merged)
            token_id[merged] = c
            n_tokens += 1
        merges.append((left, right))

        raised: set[int] = set()
        b_shifted, c_shifted = b << shift, c << shift
        for wi in where.pop(pair):
            ids = words[wi]
            n = counts[wi]
            # Replace each (a, b) left to right, in place. The left neighbour is read from the
            # rewritten word, so for "a b a b" the pair (c, a) counted after the first
            # replacement is taken back at the second, leaving (c, c).
            i = -1
            last = len(ids) - 1
            while True:
                try:
                    i = ids.index(a, i + 1, last)
                except ValueError:
                    break
                if ids[i + 1] != b:
                    continue
                if i:
                    p = ids[i - 1]
                    stats[p << shift | a] -= n
                    key = p << shift | c
                    stats[key] = stats.get(key, 0) + n
                    where[key].add(wi)
                    raised.add(key)
                if i + 1 < last:
                    nx = ids[i + 2]
                    stats[b_shifted | nx] -= n
                    key = c_shifted | nx
                    stats[key] = stats.get(key, 0) + n
                    where[key].add(wi)
                    raised.add(key)
                ids[i] = c
                del ids[i + 1]
                last -= 1
        del stats[pair]
        for key in raised:
            n = stats[key]
            if n > 0:
                heappush(heap, (-n, token_bytes[key >> shift], token_bytes[key & mask], key))
    if n_tokens < vocab_size:
        log.warning("BPE training stopped at %d tokens (asked for %d): the corpus has no more "
                    "pairs to merge; train on more text for a bigger vocabulary", n_tokens, vocab_size)
    return merges


def ranks_from_merges(merges: Iterable[tuple[bytes, bytes]]) -> dict[bytes, int]:
    """Single bytes get ranks 0..255, then each merge that makes a new token the next rank."""
    ranks = dict(_BYTE_RANKS)
    for left, right in merges:
        ranks.setdefault(left + right, len(ranks))
    return ranks


# --- the component ----------------------------------------------------------------------------


class BPETokenizer(Tokenizer):
    """Byte-level BPE trained from scratch (GPT-2 style), or GPT-2's own merges; tiktoken encodes."""

    name = "bpe"
    trainable = True
    lossless = True

    class Params(ParamsModel):
        vocab_size: int = Field(
            4096, le=1 << 24, description="target vocabulary size: 256 byte tokens + learned merges + the "
            "special tokens (ignored when gpt2_files is set)")
        pattern: str = Field(
            GPT2_PATTERN, description="pre-tokenization regex (`regex` syntax, also run by "
            "tiktoken); merges never cross its matches. Default: GPT-2's")
        special_tokens: list[str] = Field(
            default_factory=lambda: [ENDOFTEXT],
            description="tokens never split or merged; ids right after the merged tokens")
        gpt2_files: str | None = Field(
            None, description="folder with GPT-2's encoder.json + vocab.bpe: use GPT-2's merges "
            "(50257 tokens with <|endoftext|>) instead of training")

        @field_validator("pattern")
        @classmethod
        def _pattern_compiles(cls, value: str) -> str:
            try:
                regex.compile(value)
            except regex.error as exc:
                raise ValueError(f"pattern is not a valid regex: {exc}") from None
            if regex.compile(value).match(""):
                raise ValueError("pattern must not match the empty string")
            try:  # tiktoken runs it too, with a regex engine of its own (Rust fancy-regex)
                tiktoken.Encoding(name="llmbricks-bpe-pattern-check", pat_str=value,
                                  mergeable_ranks=_BYTE_RANKS, special_tokens={})
            except ValueError as exc:
                raise ValueError(f"pattern is not usable by tiktoken: {exc}") from None
            return value

        @field_validator("special_tokens")
        @classmethod
        def _specials_distinct(cls, value: list[str]) -> list[str]:
            if any(not s for s in value):
                raise ValueError("special tokens must be non-empty strings")
            duplicates = sorted({s for s in value if value.count(s) > 1})
            if duplicates:
                raise ValueError(f"special tokens listed twice: {duplicates}")
            return value

        @model_validator(mode="after")
        def _vocab_fits(self) -> BPETokenizer.Params:
            least = 256 + len(self.special_tokens)
            if self.gpt2_files is None and self.vocab_size < least:
                raise ValueError(
                    f"vocab_size {self.vocab_size} is too small: it needs at least {least} "
                    f"(256 byte tokens + {len(self.special_tokens)} special tokens)")
            return self

    def __init__(self, params: Params, *, ranks: Mapping[bytes, int] | None = None) -> None:
        """``ranks`` (used by ``load``) gives the vocabulary ready-made, skipping ``gpt2_files``."""
        super().__init__(params)
        self.params: BPETokenizer.Params = params
        self._ranks: dict[bytes, int] | None = None
        self._encoding: tiktoken.Encoding | None = None
        self._specials: dict[str, int] = {}
        if ranks is not None:
            self._set_ranks(dict(ranks))
        elif params.gpt2_files is not None:
            folder = Path(params.gpt2_files).expanduser()
            encoder, merges = folder / "encoder.json", folder / "vocab.bpe"
            if not (encoder.is_file() and merges.is_file()):
                raise DataError(f"bpe gpt2_files: {folder} must be a folder holding GPT-2's "
                                "encoder.json and vocab.bpe")
            self._set_ranks(load_gpt2_ranks(encoder, merges))

    @classmethod
    def known_vocab_size(cls, params: Params) -> int:
        if params.gpt2_files is not None:
            return GPT2_N_RANKS + len(params.special_tokens)
        return params.vocab_size

    def _set_ranks(self, ranks: dict[bytes, int]) -> None:
        if sorted(ranks.values()) != list(range(len(ranks))):
            raise DataError("BPE ranks must be the ids 0..n-1, each used once")
        n = len(ranks)
        specials = {tok: n + i for i, tok in enumerate(self.params.special_tokens)}
        try:
            encoding = tiktoken.Encoding(name="llmbricks-bpe", pat_str=self.params.pattern,
                                         mergeable_ranks=ranks, special_tokens=specials)
        except ValueError as exc:  # a pattern the `regex` module takes but tiktoken's does not
            raise DataError(f"tiktoken cannot use the bpe pattern {self.params.pattern!r}: {exc}"
                            ) from None
        self._ranks, self._specials, self._encoding = ranks, specials, encoding

    # --- vocabulary ---------------------------------------------------------------------------

    @property
    def is_trained(self) -> bool:
        return self._encoding is not None

    @property
    def vocab_size(self) -> int:
        self._require_encoding()
        return len(self._ranks) + len(self._specials)

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(self._specials)

    @property
    def ranks(self) -> dict[bytes, int]:
        """The learned vocabulary: ``{token bytes: id}`` (special tokens excluded)."""
        self._require_encoding()
        return dict(self._ranks)

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes of one token (its UTF-8 text may be cut mid-character)."""
        return self._require_encoding().decode_single_token_bytes(token_id)

    def train(self, texts: Iterable[str]) -> None:
        """Learn ``vocab_size - len(special_tokens)`` tokens from ``texts`` (replacing any)."""
        if self.params.gpt2_files is not None:
            raise DataError("this bpe tokenizer uses GPT-2's merges (gpt2_files is set); unset "
                            "gpt2_files to train one of your own")
        counts = pretokenize(texts, self.params.pattern, self.params.special_tokens)
        words: dict[bytes, int] = {}
        for piece, n in counts.items():
            try:
                word = piece.encode("utf-8")
            except UnicodeEncodeError:  # lone surrogates become U+FFFD, as tiktoken does
                word = piece.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode()
            words[word] = words.get(word, 0) + n
        target = self.params.vocab_size - len(self.params.special_tokens)
        self._set_ranks(ranks_from_merges(learn_merges(words, target)))

    # --- encoding -----------------------------------------------------------------------------

    def _require_encoding(self) -> tiktoken.Encoding:
        if self._encoding is None:
            raise DataError("tokenizer 'bpe' is not trained yet: train it on text first "
                            "(`llmbricks tokenizer train`) or set its 'gpt2_files' parameter to a "
                            "folder with GPT-2's encoder.json and vocab.bpe")
        return self._encoding

    def encode(self, text: str, allowed_special: Iterable[str] | Literal["all"] = ()) -> list[int]:
        """Token ids of ``text``; special tokens in it are plain text unless allowed here."""
        encoding = self._require_encoding()
        if not allowed_special:
            return encoding.encode_ordinary(text)
        if allowed_special == "all":
            allowed: set[str] | Literal["all"] = "all"
        elif isinstance(allowed_special, str):
            allowed = {allowed_special}
        else:
            allowed = set(allowed_special)
        return encoding.encode(text, allowed_special=allowed, disallowed_special=())

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """``encode`` for many texts at once (threads in tiktoken's Rust core)."""
        return self._require_encoding().encode_ordinary_batch(texts)

    def decode(self, ids: Iterable[int]) -> str:
        encoding = self._require_encoding()
        ids = [int(i) for i in ids]
        try:
            data = encoding.decode_bytes(ids)
        except (KeyError, OverflowError):
            bad = next(i for i in ids if not 0 <= i < self.vocab_size)
            raise DataError(f"token id {bad} is outside the 'bpe' vocabulary "
                            f"(0..{self.vocab_size - 1})") from None
        return data.decode("utf-8", errors="replace")

    # --- files --------------------------------------------------------------------------------

    def save(self, directory: str | Path) -> None:
        """Write ``tokenizer.json`` and ``ranks.tiktoken`` (format in the module docstring)."""
        self._require_encoding()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        dump_tiktoken_ranks(self._ranks, directory / RANKS_FILE)
        state: dict[str, Any] = {
            "name": self.name, "format_version": FORMAT_VERSION,
            "params": self.params.model_dump(), "vocab_size": self.vocab_size,
            "special_tokens": self._specials, "ranks_file": RANKS_FILE,
        }
        text = json.dumps(state, ensure_ascii=False, indent=1) + "\n"
        write_atomic(directory / STATE_FILE, text)

    @classmethod
    def load(cls, directory: str | Path) -> BPETokenizer:
        directory = Path(directory)
        path = directory / STATE_FILE
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"cannot load 'bpe' tokenizer from {path}: {exc}") from None
        if not isinstance(state, dict) or state.get("name") != cls.name:
            raise DataError(f"{path} does not hold a 'bpe' tokenizer")
        version = state.get("format_version")
        if version != FORMAT_VERSION:
            raise DataError(f"{path} has format_version {version!r}; this llmbricks reads "
                            f"version {FORMAT_VERSION} (upgrade llmbricks?)")
        params = cls.Params.model_validate(state["params"])
        tok = cls(params, ranks=load_tiktoken_ranks(directory / state.get("ranks_file", RANKS_FILE)))
        if tok.vocab_size != state.get("vocab_size") or tok.special_tokens != state.get("special_tokens"):
            raise DataError(f"{directory}: {RANKS_FILE} does not match {STATE_FILE} "
                            "(vocabulary size or special token ids differ)")
        return tok
