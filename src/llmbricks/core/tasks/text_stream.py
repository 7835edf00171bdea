"""Token ids in, text out as soon as it is final: what a streaming client may be shown.

Two things make a token's text not final yet:

- a byte-level token can end inside a UTF-8 character: the decoded text then ends with the
  replacement character ``\\ufffd`` until the next token completes it;
- a stop sequence (OpenAI's ``stop``) may span tokens: text that could be the start of one is
  held back until it is not, so a client never sees a piece of the stop text.

When a stop sequence appears, the text ends just before it and ``stopped`` is set; the caller
then cancels the request. ``feed`` each token, then ``flush`` once at the end: the pieces
joined are the whole text, streamed or not, so the two responses agree.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..interfaces import Tokenizer


class TextStream:
    """Incremental detokenizer with stop sequences."""

    def __init__(self, tokenizer: Tokenizer, stop: Sequence[str] = ()) -> None:
        self.tokenizer = tokenizer
        self.stop = [s for s in stop if s]
        self.ids: list[int] = []
        self.sent = 0          # characters of the decoded text already handed out
        self.stopped = False

    def feed(self, token: int) -> str:
        """The text that became final with ``token`` (often ``""``)."""
        if self.stopped:
            return ""
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids)
        if text.endswith("\ufffd"):
            return ""  # an unfinished character: wait for the rest of its bytes
        found = self._first_stop(text)
        if found is not None:
            self.stopped = True
            return self._take(text, found)
        return self._take(text, len(text) - self._held(text))

    def flush(self) -> str:
        """What is left at the end (text held back for a stop sequence that never came)."""
        if self.stopped or not self.ids:
            return ""
        text = self.tokenizer.decode(self.ids)
        return self._take(text, len(text))

    def _take(self, text: str, end: int) -> str:
        piece = text[self.sent:end] if end > self.sent else ""
        self.sent = max(self.sent, end)
        return piece

    def _first_stop(self, text: str) -> int | None:
        """Where the earliest stop sequence starts in the text not yet handed out."""
        # None can start before `sent`: text that could begin one is never handed out.
        starts = [i for s in self.stop if (i := text.find(s, self.sent)) != -1]
        return min(starts) if starts else None

    def _held(self, text: str) -> int:
        """How many trailing characters could begin a stop sequence (held back)."""
        longest = 0
        for s in self.stop:
            for size in range(min(len(s) - 1, len(text) - self.sent), longest, -1):
                if text.endswith(s[:size]):
                    longest = size
                    break
        return longest
