"""One generation request of the serving engine, and how its tokens reach the caller.

The engine's thread appends tokens; a caller reads them as they come, from a thread
(``for token in request``) or from asyncio (``async for token in request.stream()``), without
polling: each new token wakes the readers. A caller that stops listening ``cancel``s, and the
engine frees the request's slot before its next step.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

#: Why a request ended: its stop token or a stop text, its token budget, the caller, a failure.
FINISH_REASONS = ("stop", "length", "cancelled", "error")


@dataclass(frozen=True)
class Sampling:
    """How one request picks its tokens (``generate``'s parameters), and when it stops."""

    max_new_tokens: int = 16
    temperature: float = 0.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None
    stop_tokens: frozenset[int] = field(default_factory=frozenset)


class Request:
    """A prompt submitted to an ``Engine``; ``tokens`` grows until ``finish_reason`` is set.

    ``tokens`` holds the new tokens, not the stop token that ended them (``generated`` counts
    every token the model produced, that one included). Times are ``time.perf_counter()``
    seconds, for latency figures.
    """

    def __init__(self, request_id: int, prompt: list[int], sampling: Sampling) -> None:
        self.id, self.prompt, self.sampling = request_id, prompt, sampling
        self.tokens: list[int] = []
        self.generated = 0
        self.finish_reason: str | None = None
        self.error: str | None = None
        self.submitted_at = time.perf_counter()
        self.first_token_at: float | None = None
        self.finished_at: float | None = None
        self._changed = threading.Condition()
        self._wakers: list[Callable[[], None]] = []
        self._cancel: str | None = None

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    @property
    def cancel_requested(self) -> str | None:
        """The reason a caller gave to stop (read by the engine between steps), or ``None``."""
        return self._cancel

    def cancel(self, reason: str = "cancelled") -> None:
        """Stop generating (``reason`` ``"stop"`` when the caller found a stop text): the
        engine frees the slot before its next step. No effect once finished."""
        if reason not in FINISH_REASONS:
            raise ValueError(f"finish reason must be one of {FINISH_REASONS}, got {reason!r}")
        self._cancel = self._cancel or reason

    # -- the engine's side ------------------------------------------------------------------

    def push(self, token: int, stop: bool) -> None:
        """Record a produced token (kept unless it is the stop token) and wake the readers."""
        with self._changed:
            if self.first_token_at is None:
                self.first_token_at = time.perf_counter()
            self.generated += 1
            if not stop:
                self.tokens.append(token)
        self._wake()

    def finish(self, reason: str, error: str | None = None) -> None:
        with self._changed:
            if self.finish_reason is not None:
                return
            self.finish_reason, self.error = reason, error
            self.finished_at = time.perf_counter()
        self._wake()

    def _wake(self) -> None:
        with self._changed:
            self._changed.notify_all()
            wakers = list(self._wakers)
        for wake in wakers:
            wake()

    # -- the caller's side ------------------------------------------------------------------

    def wait(self, timeout: float | None = None) -> list[int]:
        """Block until finished (or ``timeout`` seconds); the new tokens."""
        with self._changed:
            self._changed.wait_for(lambda: self.done, timeout)
        return list(self.tokens)

    def __iter__(self) -> Iterator[int]:
        """Each new token as it is produced (blocking), until the request finishes."""
        sent = 0
        while True:
            with self._changed:
                self._changed.wait_for(lambda sent=sent: len(self.tokens) > sent or self.done)
                new, done = self.tokens[sent:], self.done
            yield from new
            sent += len(new)
            if done and sent == len(self.tokens):
                return

    async def stream(self) -> AsyncIterator[int]:
        """Each new token as it is produced, for asyncio; the engine's thread wakes the loop.

        Leaving the loop early (a client that disconnects) cancels the request, which frees
        its slot.
        """
        loop = asyncio.get_running_loop()
        ready = asyncio.Event()

        def wake() -> None:
            try:
                loop.call_soon_threadsafe(ready.set)
            except RuntimeError:  # the loop has closed: nobody is listening any more
                pass

        with self._changed:
            self._wakers.append(wake)
        sent = 0
        try:
            while True:
                ready.clear()  # before reading: a token pushed after this sets it again
                with self._changed:
                    new, done = self.tokens[sent:], self.done
                for token in new:
                    yield token
                sent += len(new)
                if done and sent == len(self.tokens):
                    return
                if not new:
                    await ready.wait()
        finally:
            with self._changed:
                self._wakers.remove(wake)
            if not self.done:
                self.cancel()
