"""Character-level tokenizer: one id per distinct character (nanoGPT's shakespeare_char)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import Field

from llmbricks.core.component import ParamsModel
from llmbricks.core.errors import DataError
from llmbricks.core.interfaces import Tokenizer
from llmbricks.plugins.tokenizers.state import read_state, write_state


class CharTokenizer(Tokenizer):
    """One token per character; the vocabulary is the sorted set of characters seen in training."""

    name = "char"
    trainable = True

    class Params(ParamsModel):
        chars: str | None = Field(
            None, description="fixed alphabet; when unset the vocabulary is learned by train()")
        special_tokens: list[str] = Field(
            default_factory=list, description="extra tokens appended after the characters")

    def __init__(self, params: Params) -> None:
        super().__init__(params)
        self._chars: list[str] = []
        self._specials: dict[str, int] = {}
        if params.chars is not None:
            self._set_vocab(params.chars)

    @classmethod
    def known_vocab_size(cls, params: Params) -> int | None:
        if params.chars is None:
            return None
        return len(set(params.chars)) + len(params.special_tokens)

    def _set_vocab(self, chars: Iterable[str]) -> None:
        self._chars = sorted(set(chars))
        self._index = {c: i for i, c in enumerate(self._chars)}
        self._specials = {tok: len(self._chars) + i for i, tok in enumerate(self.params.special_tokens)}
        self._by_id = {**dict(enumerate(self._chars)), **{i: t for t, i in self._specials.items()}}

    @property
    def is_trained(self) -> bool:
        return bool(self._chars)

    def train(self, texts: Iterable[str]) -> None:
        seen: set[str] = set()
        for text in texts:
            seen.update(text)
        self._set_vocab(seen)

    @property
    def vocab_size(self) -> int:
        return len(self._chars) + len(self._specials)

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(self._specials)

    def _require_vocab(self) -> None:
        if not self._chars:
            raise DataError("tokenizer 'char' has no vocabulary yet: train it on text first "
                            "or set its 'chars' parameter")

    def encode(self, text: str, allowed_special: Iterable[str] | Literal["all"] = ()) -> list[int]:
        self._require_vocab()
        allowed = set(self._specials) if allowed_special == "all" else set(allowed_special)
        ids: list[int] = []
        pos = 0
        while pos < len(text):
            special = next((s for s in allowed if text.startswith(s, pos)), None)
            if special is not None:
                ids.append(self._specials[special])
                pos += len(special)
                continue
            char = text[pos]
            try:
                ids.append(self._index[char])
            except KeyError:
                raise DataError(f"character {char!r} at offset {pos} is not in the 'char' "
                                "tokenizer's vocabulary; retrain it on text that contains it") from None
            pos += 1
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        self._require_vocab()
        try:
            return "".join(self._by_id[int(i)] for i in ids)
        except KeyError as exc:
            raise DataError(f"token id {exc.args[0]} is outside the 'char' vocabulary "
                            f"(0..{self.vocab_size - 1})") from None

    def save(self, directory: str | Path) -> None:
        write_state(directory, {"name": self.name, "params": self.params.model_dump(),
                                "chars": "".join(self._chars)})

    @classmethod
    def load(cls, directory: str | Path) -> CharTokenizer:
        state = read_state(directory, cls.name)
        tok = cls(cls.Params.model_validate(state["params"]))
        tok._set_vocab(state["chars"])
        return tok
