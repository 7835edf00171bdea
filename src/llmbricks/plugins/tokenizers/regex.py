"""The book's simple word-level tokenizer (chapter 2, ``SimpleTokenizerV2``), trainable.

Text splits on punctuation, ``--`` and whitespace; whitespace is dropped. The vocabulary is the
sorted set of pieces seen in training plus ``<|endoftext|>`` and ``<|unk|>``; unknown words map to
``<|unk|>``. Decoding joins with spaces and removes the space before punctuation, so the round
trip is lossy (whitespace is normalized).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import Field

from llmbricks.core.component import ParamsModel
from llmbricks.core.errors import DataError
from llmbricks.core.interfaces import Tokenizer
from llmbricks.plugins.tokenizers.state import read_state, write_state

ENDOFTEXT, UNK = "<|endoftext|>", "<|unk|>"


class RegexTokenizer(Tokenizer):
    """The book's word-level tokenizer: split on punctuation and spaces, <|unk|> for new words."""

    name = "regex"
    trainable = True
    lossless = False

    class Params(ParamsModel):
        split_pattern: str = Field(r'([,.:;?_!"()\']|--|\s)',
                                   description="regex whose matches separate (and are kept as) tokens")
        join_pattern: str = Field(r'\s+([,.:;?!"()\'])',
                                  description="decode removes the space before these characters")

    def __init__(self, params: Params) -> None:
        super().__init__(params)
        self._split = re.compile(params.split_pattern)
        self._join = re.compile(params.join_pattern)
        self._vocab: list[str] = []
        self._index: dict[str, int] = {}

    def pieces(self, text: str) -> list[str]:
        """The word and punctuation pieces of ``text``, whitespace dropped."""
        return [p.strip() for p in self._split.split(text) if p.strip()]

    def train(self, texts: Iterable[str]) -> None:
        words: set[str] = set()
        for text in texts:
            words.update(self.pieces(text))
        words.discard(ENDOFTEXT)
        words.discard(UNK)
        self._set_vocab([*sorted(words), ENDOFTEXT, UNK])

    def _set_vocab(self, vocab: list[str]) -> None:
        self._vocab = vocab
        self._index = {w: i for i, w in enumerate(vocab)}

    @property
    def is_trained(self) -> bool:
        return bool(self._vocab)

    @property
    def vocab_size(self) -> int:
        return len(self._vocab)

    @property
    def special_tokens(self) -> dict[str, int]:
        return {t: self._index[t] for t in (ENDOFTEXT, UNK) if t in self._index}

    def _require_vocab(self) -> None:
        if not self._vocab:
            raise DataError("tokenizer 'regex' has no vocabulary yet: train it on text first")

    def encode(self, text: str, allowed_special: Iterable[str] | Literal["all"] = ()) -> list[int]:
        # Specials are words of the vocabulary here, as in the book: always recognized.
        self._require_vocab()
        unk = self._index[UNK]
        return [self._index.get(piece, unk) for piece in self.pieces(text)]

    def decode(self, ids: Iterable[int]) -> str:
        self._require_vocab()
        ids = [int(i) for i in ids]
        bad = next((i for i in ids if not 0 <= i < self.vocab_size), None)
        if bad is not None:
            raise DataError(f"token id {bad} is outside the 'regex' vocabulary (0..{self.vocab_size - 1})")
        return self._join.sub(r"\1", " ".join(self._vocab[i] for i in ids))

    def save(self, directory: str | Path) -> None:
        write_state(directory, {"name": self.name, "params": self.params.model_dump(),
                                "vocab": self._vocab})

    @classmethod
    def load(cls, directory: str | Path) -> RegexTokenizer:
        state = read_state(directory, cls.name)
        tok = cls(cls.Params.model_validate(state["params"]))
        tok._set_vocab(state["vocab"])
        return tok
