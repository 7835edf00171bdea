"""The token cache: a source tokenized once into a memmapped file, then split.

Windowing the cached tokens into training batches is ``core.train.windows``.

- ``TokenCache``: a flat file of uint16 ids (uint32 when the vocabulary needs it), keyed by the
  source's content hash and the tokenizer's fingerprint, built by streaming the source in chunks
  so peak memory does not grow with the corpus.
- ``split_tokens``: a contiguous train/val split (the book's 90/10).
- ``prepare_data``: a config's tokenizer made ready (trained if it learns) and its corpus cached.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path

import numpy as np

from ..build import build_tokenizer, load_tokenizer
from ..config import Config
from ..errors import ConfigError, DataError
from ..interfaces import DataSource, Tokenizer
from ..registry import Registry, get_registry
from .atomic import atomic_file, write_atomic
from .datafiles import cache_dir as default_cache_dir

#: Characters handed to the tokenizer at a time when building a cache.
CHUNK_CHARS = 1 << 20
META_FILE = "meta.json"
TOKENS_FILE = "tokens.bin"


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (vocab <= 65,536), else uint32."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def iter_texts(source: DataSource) -> Iterator[str]:
    if source.records != "text":
        raise DataError(f"data source '{source.name}' yields {source.records} records, not text; "
                        "pick a text source (e.g. text, tinyshakespeare, python_docs)")
    yield from source


def content_hash(source: DataSource) -> str:
    """sha256 of the source's text (UTF-8), streamed."""
    digest = hashlib.sha256()
    for piece in iter_texts(source):
        digest.update(piece.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def _safe_split(text: str) -> int:
    """An index where cutting ``text`` leaves every pre-tokenizer's pieces as they were.

    Prefer just after a newline between two non-space characters (``x\\n|y``), else just before a
    space that starts a word after a non-space (``x| y``): GPT-2-style pre-tokenizers never join
    across either. Returns 0 when there is no such place.
    """
    for sep, offset in (("\n", 1), (" ", 0)):
        i = text.rfind(sep, 0, len(text) - 1)
        while i > 0:
            if not text[i - 1].isspace() and not text[i + 1].isspace():
                return i + offset
            i = text.rfind(sep, 0, i)
    return 0


def text_chunks(texts: Iterable[str], chunk_chars: int = CHUNK_CHARS) -> Iterator[str]:
    """Re-cut a stream of text pieces into ~``chunk_chars`` chunks at safe places."""
    buffer = ""
    for piece in texts:
        buffer += piece
        while len(buffer) >= chunk_chars:
            cut = _safe_split(buffer[: chunk_chars * 2])
            if cut == 0:
                if len(buffer) < chunk_chars * 2:
                    break  # wait for more text to find a safe place
                cut = chunk_chars * 2  # no safe place in 2 chunks: cut anyway (very rare)
            yield buffer[:cut]
            buffer = buffer[cut:]
    if buffer:
        yield buffer


@dataclass(frozen=True)
class CacheInfo:
    """What ``meta.json`` records about a token cache."""

    n_tokens: int
    dtype: str
    vocab_size: int
    distinct_ids: int
    n_chars: int
    source: str
    content_sha256: str
    tokenizer: str
    tokenizer_fingerprint: str
    seconds: float


class TokenCache:
    """A tokenized corpus on disk, read as a memmap."""

    def __init__(self, directory: str | Path, *, reused: bool = False) -> None:
        self.directory = Path(directory)
        self.reused = reused  # opened an existing cache rather than building it
        meta = self.directory / META_FILE
        if not meta.is_file():
            raise DataError(f"{self.directory} is not a complete token cache (no {META_FILE})")
        self.info = CacheInfo(**json.loads(meta.read_text(encoding="utf-8")))

    @property
    def path(self) -> Path:
        return self.directory / TOKENS_FILE

    @property
    def tokens(self) -> np.ndarray:
        if self.info.n_tokens == 0:
            return np.zeros(0, dtype=self.info.dtype)
        return np.memmap(self.path, dtype=self.info.dtype, mode="r", shape=(self.info.n_tokens,))

    def __len__(self) -> int:
        return self.info.n_tokens


def cache_key(content_sha256: str, tokenizer_fingerprint: str) -> str:
    return hashlib.sha256(f"{content_sha256}:{tokenizer_fingerprint}".encode()).hexdigest()[:32]


def build_token_cache(source: DataSource, tokenizer: Tokenizer, root: str | Path | None = None,
                      *, chunk_chars: int = CHUNK_CHARS, batch: int = 8,
                      content_sha256: str | None = None) -> TokenCache:
    """Tokenize ``source`` into a cache under ``root`` (default: the user cache), or reuse it.

    Streams the text: hashing is one pass (skipped when the caller already has
    ``content_sha256``), tokenizing another; at most ``batch`` chunks of ``chunk_chars``
    characters and their ids are in memory at once.
    """
    root = Path(root) if root is not None else default_cache_dir() / "tokens"
    if not tokenizer.is_trained:
        raise DataError(f"tokenizer '{tokenizer.name}' is not trained; train it before caching")
    start = time.perf_counter()
    digest = content_sha256 or content_hash(source)
    fingerprint = tokenizer.fingerprint()
    directory = root / cache_key(digest, fingerprint)
    if (directory / META_FILE).is_file():
        return TokenCache(directory, reused=True)
    directory.mkdir(parents=True, exist_ok=True)
    dtype = token_dtype(tokenizer.vocab_size)
    seen = np.zeros(tokenizer.vocab_size, dtype=bool)
    n_tokens = n_chars = 0
    with atomic_file(directory / TOKENS_FILE) as out:
        pending: list[str] = []

        def flush() -> None:
            nonlocal n_tokens
            for ids in tokenizer.encode_batch(pending):
                array = np.asarray(ids, dtype=dtype)
                seen[array] = True
                out.write(array.tobytes())
                n_tokens += len(array)
            pending.clear()

        for chunk in text_chunks(iter_texts(source), chunk_chars):
            n_chars += len(chunk)
            pending.append(chunk)
            if len(pending) >= batch:
                flush()
        flush()
    info = CacheInfo(n_tokens=n_tokens, dtype=dtype.name, vocab_size=tokenizer.vocab_size,
                     distinct_ids=int(seen.sum()), n_chars=n_chars, source=source.describe(),
                     content_sha256=digest, tokenizer=tokenizer.name,
                     tokenizer_fingerprint=fingerprint,
                     seconds=round(time.perf_counter() - start, 3))
    # The cache exists once meta.json does.
    write_atomic(directory / META_FILE, json.dumps(asdict(info), indent=1))
    return TokenCache(directory)


def split_tokens(tokens: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Contiguous split: the first ``1 - val_fraction`` for training, the rest for validation.

    ``cut = floor(N * (1 - val_fraction))``, as the book (``int(train_ratio * len(text))``) and
    nanoGPT (``data[:int(n * 0.9)]``) cut, so tiny shakespeare's validation split is nanoGPT's
    to the character. The product is taken in decimal (``Decimal(str(f))``), so ``10 x 0.7``
    is 7, not the binary 6.999...
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    cut = math.floor(len(tokens) * (1 - Decimal(str(val_fraction))))
    return tokens[:cut], tokens[cut:]


@dataclass
class PreparedData:
    """A config's corpus, tokenized: the tokenizer used and the token cache."""

    tokenizer: Tokenizer
    cache: TokenCache
    trained_tokenizer: bool

    def split(self, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
        return split_tokens(self.cache.tokens, val_fraction)


def _cache_root(config: Config) -> Path:
    return Path(config.data.cache_dir) if config.data.cache_dir else default_cache_dir() / "tokens"


def text_source(config: Config, registry: Registry | None = None) -> DataSource:
    """The config's ``data.source``, which must yield text (a config error otherwise)."""
    registry = registry or get_registry()
    source = registry.build("datasource", config.data.source)
    if source.records != "text":
        raise ConfigError(f"data.source: '{source.name}' yields {source.records} records, not text; "
                          "pick a text source (e.g. text, tinyshakespeare, python_docs)")
    return source


def ready_tokenizer(config: Config, registry: Registry | None = None,
                    source: DataSource | None = None,
                    content_sha256: str | None = None) -> tuple[Tokenizer, bool]:
    """The config's tokenizer, trained on ``data.source`` first if it learns from data.

    With ``train.init_from`` naming a directory that holds a tokenizer, that tokenizer is used:
    the weights only make sense with their own vocabulary. A labeled source (classification)
    trains it on its rows' texts. The trained tokenizer is kept beside the token caches, keyed by
    the source's content and the tokenizer's params, so asking again reuses it. Returns
    ``(tokenizer, trained_now)``.
    """
    registry = registry or get_registry()
    if config.model.tokenizer is None:
        raise ConfigError("model.tokenizer: not set; name one (e.g. char, bpe, tiktoken)")
    start = config.train.init_from
    if start and (Path(start) / "tokenizer" / "tokenizer.json").is_file():
        # Finetuning: the weights' own vocabulary, never one learned anew from other data.
        return load_tokenizer(Path(start) / "tokenizer", registry), False
    tokenizer = build_tokenizer(config, registry)
    if tokenizer.is_trained:
        return tokenizer, False
    if source is None:
        source = registry.build("datasource", config.data.source)
        if source.records not in ("text", "labeled"):
            source = text_source(config, registry)  # the usual error for other records
    if source.records == "labeled":
        content_sha256 = None  # the hash of a text source's pieces does not apply
    spec = json.dumps({"tokenizer": config.model.tokenizer.to_data(),
                       "content": content_sha256 or _learned_text_hash(source)}, sort_keys=True)
    saved = _cache_root(config) / "tokenizers" / hashlib.sha256(spec.encode()).hexdigest()[:32]
    if (saved / "tokenizer.json").is_file():
        return load_tokenizer(saved, registry), False
    tokenizer.train(learned_texts(source))
    tokenizer.save(saved)
    return tokenizer, True


def learned_texts(source: DataSource) -> Iterator[str]:
    """What a tokenizer learns from: a text source's pieces, or each labeled row's text.

    Labeled rows (classification data) give their texts, one per line; labels are never seen.
    """
    if source.records != "labeled":
        yield from iter_texts(source)
        return
    for text, _ in source:
        yield text + "\n"


def _learned_text_hash(source: DataSource) -> str:
    digest = hashlib.sha256()
    for piece in learned_texts(source):
        digest.update(piece.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def prepare_data(config: Config, registry: Registry | None = None,
                 tokenizer: Tokenizer | None = None) -> PreparedData:
    """Tokenize ``config.data.source`` with ``config.model.tokenizer`` into a token cache.

    A trainable tokenizer that is not trained yet is trained on the same source first
    (``ready_tokenizer``). A given ``tokenizer`` (e.g. a run's own) is used as it is.
    """
    registry = registry or get_registry()
    source = text_source(config, registry)
    digest = content_hash(source)  # one pass over the corpus serves both keys
    if tokenizer is not None:
        trained = False
    else:
        tokenizer, trained = ready_tokenizer(config, registry, source, content_sha256=digest)
    cache = build_token_cache(source, tokenizer, _cache_root(config), content_sha256=digest)
    return PreparedData(tokenizer=tokenizer, cache=cache, trained_tokenizer=trained)
