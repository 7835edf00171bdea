"""Named plain-text corpora: tiny shakespeare and the book's chapter-2 story."""

from __future__ import annotations

from collections.abc import Iterator

from llmbricks.plugins.data import corpora, textio
from llmbricks.plugins.data.named import NamedFileParams, NamedFileSource

_HINT = "the file is not UTF-8 text; check the `path` param"


class _NamedText(NamedFileSource):
    def __iter__(self) -> Iterator[str]:
        path = self.resolve()
        yield from textio.require_text(textio.iter_text(path, "utf-8", "strict", _HINT), str(path))


class TinyShakespeareSource(_NamedText):
    """Karpathy's tiny shakespeare (1,115,394 characters), the char-rnn and nanoGPT corpus."""

    name = "tinyshakespeare"
    records = "text"
    remote = corpora.TINYSHAKESPEARE

    class Params(NamedFileParams):
        """Where to find tinyshakespeare.txt."""


class TheVerdictSource(_NamedText):
    """Edith Wharton's "The Verdict" (20,479 characters), the book's chapter-2 corpus."""

    name = "the_verdict"
    records = "text"
    remote = corpora.THE_VERDICT

    class Params(NamedFileParams):
        """Where to find the-verdict.txt."""

