"""Pretrained BPE encodings (OpenAI's) through tiktoken's Rust core, resolved without network.

Resolution: an explicit ``file`` (a ``.tiktoken`` ranks file, or a directory holding GPT-2's
``encoder.json`` + ``vocab.bpe``), then ``$LLMBRICKS_DATA_DIR`` and the llmbricks cache (checked
against the canonical sha256), then tiktoken's own cache and download.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import tiktoken as tk
from pydantic import Field

from llmbricks.core.component import ParamsModel
from llmbricks.core.errors import DataError
from llmbricks.core.interfaces import Tokenizer
from llmbricks.core.store.datafiles import (
    DATA_DIR_ENV,
    OFFLINE_ENV,
    RemoteFile,
    cache_dir,
    offline,
    resolve_file,
)
from llmbricks.plugins.tokenizers.bpe import GPT2_PATTERN
from llmbricks.plugins.tokenizers.gpt2_files import load_gpt2_ranks, load_tiktoken_ranks
from llmbricks.plugins.tokenizers.state import read_state, write_state

ENDOFTEXT = "<|endoftext|>"
BLOB = "https://openaipublic.blob.core.windows.net"

# GPT-2's pre-tokenizer (r50k), and those of the later encodings, as tiktoken defines them.
R50K_PATTERN = GPT2_PATTERN
CL100K_PATTERN = (r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++"""
                  r"""[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""")
O200K_PATTERN = "|".join([
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""\p{N}{1,3}""", r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""", r"""\s*[\r\n]+""", r"""\s+(?!\S)""",
    r"""\s+""",
])


@dataclass(frozen=True)
class EncodingSpec:
    ranks: RemoteFile
    pattern: str
    special_tokens: dict[str, int]
    n_vocab: int


R50K = RemoteFile("r50k_base.tiktoken", f"{BLOB}/encodings/r50k_base.tiktoken",
                  "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930")
ENCODINGS: dict[str, EncodingSpec] = {
    # gpt2 and r50k_base have identical ranks; the file is also shipped as gpt2.tiktoken.
    "gpt2": EncodingSpec(RemoteFile("gpt2.tiktoken", R50K.url, R50K.sha256), R50K_PATTERN,
                         {ENDOFTEXT: 50256}, 50257),
    "r50k_base": EncodingSpec(R50K, R50K_PATTERN, {ENDOFTEXT: 50256}, 50257),
    "p50k_base": EncodingSpec(
        RemoteFile("p50k_base.tiktoken", f"{BLOB}/encodings/p50k_base.tiktoken",
                   "94b5ca7dff4d00767bc256fdd1b27e5b17361d7b8a5f968547f9f23eb70d2069"),
        R50K_PATTERN, {ENDOFTEXT: 50256}, 50281),
    "cl100k_base": EncodingSpec(
        RemoteFile("cl100k_base.tiktoken", f"{BLOB}/encodings/cl100k_base.tiktoken",
                   "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"),
        CL100K_PATTERN, {ENDOFTEXT: 100257, "<|fim_prefix|>": 100258, "<|fim_middle|>": 100259,
                         "<|fim_suffix|>": 100260, "<|endofprompt|>": 100276}, 100277),
    "o200k_base": EncodingSpec(
        RemoteFile("o200k_base.tiktoken", f"{BLOB}/encodings/o200k_base.tiktoken",
                   "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"),
        O200K_PATTERN, {ENDOFTEXT: 199999, "<|endofprompt|>": 200018}, 200019),
}
EncodingName = Literal["gpt2", "r50k_base", "p50k_base", "cl100k_base", "o200k_base"]


def _ranks_from_path(path: Path) -> dict[bytes, int]:
    if path.is_dir():
        encoder, merges = path / "encoder.json", path / "vocab.bpe"
        if not (encoder.is_file() and merges.is_file()):
            raise DataError(f"{path} must hold encoder.json and vocab.bpe (GPT-2's files)")
        return load_gpt2_ranks(encoder, merges)
    if not path.is_file():
        raise DataError(f"tiktoken file {path} does not exist")
    return load_tiktoken_ranks(path)


def load_encoding(name: str, file: str | None = None) -> tk.Encoding:
    """Build the tiktoken ``Encoding`` named ``name``, trying the offline places first."""
    spec = ENCODINGS[name]
    if file is not None:
        ranks = _ranks_from_path(Path(file).expanduser())
    else:
        ranks = _offline_ranks(name, spec)
    if ranks is not None:
        return tk.Encoding(name=f"llmbricks-{name}", pat_str=spec.pattern, mergeable_ranks=ranks,
                           special_tokens=spec.special_tokens, explicit_n_vocab=spec.n_vocab)
    if offline():
        reason = f"{OFFLINE_ENV} is set"
    else:
        try:
            return tk.get_encoding(name)  # tiktoken's own cache, then its download
        except Exception as exc:  # no network, proxy, blocked host...
            reason = f"tiktoken could not fetch it ({type(exc).__name__})"
    extra = " or encoder.json + vocab.bpe" if name == "gpt2" else ""
    raise DataError(f"tiktoken encoding '{name}' not found: place {spec.ranks.filename}{extra} in "
                    f"${DATA_DIR_ENV} or {cache_dir()}, or set the tokenizer's 'file' param "
                    f"({reason})")


def _offline_ranks(name: str, spec: EncodingSpec) -> dict[bytes, int] | None:
    try:
        return load_tiktoken_ranks(resolve_file(spec.ranks, download=False))
    except DataError as exc:
        if "sha256 mismatch" in str(exc):
            raise
    data_dir = os.environ.get(DATA_DIR_ENV)
    if name == "gpt2" and data_dir and (Path(data_dir) / "encoder.json").is_file():
        return _ranks_from_path(Path(data_dir))
    return None


class TiktokenTokenizer(Tokenizer):
    """OpenAI's pretrained BPE encodings (gpt2, r50k, p50k, cl100k, o200k) via tiktoken."""

    name = "tiktoken"

    class Params(ParamsModel):
        encoding: EncodingName = Field("gpt2", description="which pretrained encoding")
        file: str | None = Field(None, description="a .tiktoken ranks file, or a folder with "
                                 "encoder.json + vocab.bpe (GPT-2); overrides the lookup")

    def __init__(self, params: Params) -> None:
        super().__init__(params)
        self.encoding = load_encoding(params.encoding, params.file)

    @classmethod
    def known_vocab_size(cls, params: Params) -> int:
        return ENCODINGS[params.encoding].n_vocab

    @property
    def vocab_size(self) -> int:
        return self.encoding.n_vocab

    @property
    def special_tokens(self) -> dict[str, int]:
        return {t: self.encoding.encode_single_token(t) for t in self.encoding.special_tokens_set}

    def encode(self, text: str, allowed_special: Iterable[str] | Literal["all"] = ()) -> list[int]:
        if not allowed_special:
            return self.encoding.encode_ordinary(text)
        allowed = allowed_special if allowed_special == "all" else set(allowed_special)
        # Specials that are not allowed are encoded as plain text, never an error.
        return self.encoding.encode(text, allowed_special=allowed, disallowed_special=())

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self.encoding.encode_ordinary_batch(texts)

    def decode(self, ids: Iterable[int]) -> str:
        ids = list(ids)
        bad = next((i for i in ids if not 0 <= i < self.encoding.n_vocab), None)
        if bad is not None:
            raise DataError(f"token id {bad} is outside the '{self.params.encoding}' vocabulary "
                            f"(0..{self.encoding.n_vocab - 1})")
        return self.encoding.decode(ids)

    def _ranks_digest(self) -> str:
        """A hash of what the encoding does, so an edited ranks file at the same path differs."""
        digest = hashlib.sha256(self.encoding._pat_str.encode())
        decode = self.encoding.decode_single_token_bytes
        specials = set(self.special_tokens.values())
        for rank in range(self.encoding.n_vocab):  # bytes in rank order
            try:
                token = b"<special>" if rank in specials else decode(rank)
            except KeyError:  # a gap in the ranks (p50k)
                token = b"<gap>"
            digest.update(len(token).to_bytes(2, "little") + token)
        return digest.hexdigest()

    def save(self, directory: str | Path) -> None:
        write_state(directory, {"name": self.name, "params": self.params.model_dump(),
                                "n_vocab": self.encoding.n_vocab,
                                "ranks_sha256": self._ranks_digest()})

    @classmethod
    def load(cls, directory: str | Path) -> TiktokenTokenizer:
        return cls(cls.Params.model_validate(read_state(directory, cls.name)["params"]))
