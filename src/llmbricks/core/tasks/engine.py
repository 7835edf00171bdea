"""The serving engine: many generation requests over one model, batched continuously.

Decoding one stream on a CPU is bound by memory bandwidth: every step reads every weight to
make one token. Decoding ``B`` streams in one pass reads them once for ``B`` tokens, so the
engine keeps one running batch and, between decode steps,

- admits waiting requests (each gets a slot of the ``SlotKVCache``: its own keys, position,
  sampling parameters, seed and stop condition);
- prefills one chunk of the new prompts, all of them in one pass (``[k, T]``, right-padded,
  ``k * T <= prefill_chunk``), so a long prompt delays the running streams by one chunk at a
  time, not by its whole length, and many short ones cost one pass, not one each;
- retires finished or cancelled streams at once, moving the last running stream into the
  hole so the batch stays the contiguous slots ``0 .. n-1`` (prompts being prefilled sit in
  the top slots, and move down into slot ``n`` when their first token is out).

Each step is ``model(last_tokens [n, 1], cache=slots 0..n-1)``: row ``b`` at its own position
(``PositionContext.per_row``). A request's greedy tokens are those it would get alone: the rows
never see each other (the position mask hides other rows' lengths), only the order of floating
point sums within a matmul may differ with the batch size.

Models whose positional or attention components do not declare ``per_row_positions`` are served
one stream at a time (``max_batch`` 1), which is always right.
"""

from __future__ import annotations

import collections
import itertools
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import LlmbricksError
from ..interfaces import Attention, Model, PositionalEncoding, Tokenizer
from ..slot_cache import SlotKVCache
from .generation import (
    GenerationError,
    check_generates,
    check_generation_params,
    load_generator,
    next_token,
)
from .requests import Request, Sampling


class QueueFull(LlmbricksError):
    """The engine's waiting queue is at its limit: try again later (HTTP 503)."""


class PromptTooLong(GenerationError):
    """Prompt plus the tokens asked for do not fit the context (HTTP 400)."""


def batching_blockers(model: Model) -> list[str]:
    """The positional and attention components that cannot take per-row positions."""
    found = {f"{m.kind} '{m.name}'" for m in model.modules()
             if isinstance(m, (PositionalEncoding, Attention)) and not m.per_row_positions}
    return sorted(found)


class Engine:
    """Continuous batching over one model; ``submit`` returns a ``Request`` to read from.

    ``max_batch`` streams decode together (each holds a cache slot of ``max_len`` positions:
    the model's context by default); up to ``max_queue`` more wait for a slot, and ``submit``
    raises ``QueueFull`` past that (back-pressure). Use as a context manager, or ``close()``:
    the scheduler thread holds the engine until then. The model is put in eval mode.

    The cache takes ``max_batch * max_len`` positions of keys and values for every layer, up
    front (GPT-2 124M, 32 slots of 1024: 2.4 GB in fp32); ``max_len`` lowers it.
    """

    def __init__(self, model: Model, tokenizer: Tokenizer | None = None, *, max_batch: int = 32,
                 max_queue: int = 256, max_len: int | None = None, prefill_chunk: int = 256,
                 vocab_limit: int | None = None) -> None:
        for name, value in (("max_batch", max_batch), ("max_queue", max_queue),
                            ("prefill_chunk", prefill_chunk)):
            if not isinstance(value, int) or value < 1:
                raise GenerationError(f"{name} must be a whole number >= 1, got {value!r}")
        check_generates(model)
        context = model.positions_limit() or model.dims.context_length
        if max_len is not None and (not isinstance(max_len, int) or max_len < 2):
            raise GenerationError(f"max_len must be a whole number >= 2, got {max_len!r}")
        self.model, self.tokenizer = model.eval(), tokenizer
        self.config: Any = None  # the run's config, when loaded from one (Engine.load)
        self.blockers = batching_blockers(model)
        self.max_batch = 1 if self.blockers else max_batch
        self.max_queue, self.prefill_chunk = max_queue, prefill_chunk
        limit = model.positions_limit()
        self.max_len = min(max_len, limit) if (max_len and limit) else (max_len or context)
        if vocab_limit is None and tokenizer is not None:
            vocab_limit = tokenizer.vocab_size
        self.vocab_limit = vocab_limit if vocab_limit and vocab_limit < model.dims.vocab_size else None
        self.cache = SlotKVCache.for_model(model, self.max_batch, self.max_len)
        self.device = next(model.parameters()).device
        self._waiting: collections.deque[Request] = collections.deque()
        self._running: list[Request] = []           # slot i holds _running[i]
        self._prefilling: list[Request] = []        # the top slots: [S - len, S)
        self._fed: dict[int, int] = {}              # prompt tokens cached so far, by request id
        self._generators: dict[int, torch.Generator] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Condition()
        self._closed = False
        self.steps = 0
        self._thread = threading.Thread(target=self._loop, name="llmbricks-engine", daemon=True)
        self._thread.start()

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu", **options: Any) -> Engine:
        """An engine over a run, a model directory or an imported checkpoint."""
        config, model, tokenizer = load_generator(path, device)
        engine = cls(model, tokenizer, **options)
        engine.config = config
        return engine

    # -- submitting ---------------------------------------------------------------------------

    def sampling(self, *, max_new_tokens: int = 16, temperature: float = 0.0,
                 top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
                 stop_tokens: Sequence[int] | None = None) -> Sampling:
        """Checked sampling parameters (one-line errors, as ``generate``'s)."""
        check_generation_params(max_new_tokens=max_new_tokens, temperature=temperature,
                                top_k=top_k, top_p=top_p, seed=seed)
        return Sampling(max_new_tokens, float(temperature), top_k, top_p, seed,
                        frozenset(stop_tokens or ()))

    def check_fits(self, prompt_tokens: int, max_new_tokens: int) -> None:
        """Refuse a request whose prompt plus new tokens overflow the context (one line)."""
        # The last new token is never fed back, so it needs no cache position.
        needed = prompt_tokens + max(max_new_tokens - 1, 0)
        if prompt_tokens >= self.max_len or needed > self.max_len:
            raise PromptTooLong(
                f"this model's context is {self.max_len} tokens, but the request needs "
                f"{prompt_tokens + max_new_tokens} ({prompt_tokens} in the prompt, "
                f"{max_new_tokens} to generate); shorten the prompt or ask for fewer tokens")

    def submit(self, prompt: Sequence[int], sampling: Sampling | None = None) -> Request:
        """Queue ``prompt`` (token ids); read the returned ``Request`` for its tokens."""
        ids = [int(t) for t in prompt]
        if not ids:
            raise GenerationError("the prompt is empty: give at least one token")
        sampling = sampling or Sampling()
        self.check_fits(len(ids), sampling.max_new_tokens)
        vocab = self.vocab_limit or self.model.dims.vocab_size
        if min(ids) < 0 or max(ids) >= vocab:
            raise GenerationError(f"the prompt holds token ids outside the vocabulary (0 to "
                                  f"{vocab - 1})")
        request = Request(next(self._ids), ids, sampling)
        with self._lock:
            if self._closed:
                raise LlmbricksError("the engine is closed")
            # Waiting for a slot: those past the free slots (which the next step fills).
            free = self.max_batch - len(self._running) - len(self._prefilling)
            if len(self._waiting) - max(free, 0) >= self.max_queue:
                raise QueueFull(f"the queue is full ({self.max_queue} requests waiting, "
                                f"{len(self._running)} running); retry later")
            if sampling.max_new_tokens == 0:
                request.finish("length")
                return request
            self._waiting.append(request)
            self._lock.notify()
        return request

    def generate(self, prompt: Sequence[int], sampling: Sampling | None = None) -> list[int]:
        """Submit and wait: the new tokens."""
        request = self.submit(prompt, sampling)
        tokens = request.wait()
        if request.finish_reason == "error":
            raise LlmbricksError(f"generation failed: {request.error}")
        return tokens

    def stats(self) -> dict[str, int]:
        """Requests running (holding a slot, prefilling included) and waiting; steps so far."""
        with self._lock:
            return {"running": len(self._running) + len(self._prefilling),
                    "waiting": len(self._waiting), "max_batch": self.max_batch,
                    "max_queue": self.max_queue, "steps": self.steps}

    def close(self) -> None:
        """Stop the engine; requests still waiting or running finish as cancelled."""
        with self._lock:
            self._closed = True
            self._lock.notify()
        self._thread.join()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the scheduler ------------------------------------------------------------------------

    def _loop(self) -> None:
        with torch.inference_mode():
            while True:
                with self._lock:
                    self._lock.wait_for(lambda: self._closed or self._waiting or self._running
                                        or self._prefilling)
                    if self._closed:
                        break
                try:
                    self._step()
                except Exception as exc:  # a failing pass fails its requests, not the engine
                    self._fail_all(f"{type(exc).__name__}: {exc}")
        for request in [*self._running, *self._prefilling, *self._waiting]:
            request.finish("cancelled")

    def _step(self) -> None:
        self._retire_cancelled()
        if self._running:
            self._decode()
        self._prefill_chunk()
        self.steps += 1

    def _retire_cancelled(self) -> None:
        with self._lock:
            for request in [r for r in self._waiting if r.cancel_requested]:
                self._waiting.remove(request)
                request.finish(request.cancel_requested)
        for slot in reversed(range(len(self._running))):
            request = self._running[slot]
            if request.cancel_requested:
                self._retire(slot, request.cancel_requested)
        for index in reversed(range(len(self._prefilling))):
            request = self._prefilling[index]
            if request.cancel_requested:
                self._leave_prefill(index)
                request.finish(request.cancel_requested)

    def _retire(self, slot: int, reason: str, error: str | None = None) -> None:
        """Finish the stream in ``slot``; the last running stream moves into its slot, so the
        running streams stay in slots ``0 .. n-1``."""
        with self._lock:
            request = self._running[slot]
            last = len(self._running) - 1
            self.cache.move(last, slot)
            self.cache.clear(last)
            self._running[slot] = self._running[last]
            self._running.pop()
        self._generators.pop(request.id, None)
        request.finish(reason, error)

    def _decode(self) -> None:
        """One token for every running stream, in one pass."""
        n = len(self._running)
        last = torch.tensor([[r.tokens[-1]] for r in self._running],
                            device=self.device)
        logits = self.model(last, cache=self.cache.rows(0, n))[:, -1]
        chosen = self._choose(logits, self._running)
        for slot in reversed(range(n)):
            reason = self._emit(self._running[slot], chosen[slot])
            if reason is not None:
                self._retire(slot, reason)

    def _prefill_slot(self, index: int) -> int:
        """The slot of ``_prefilling[index]``: prompts being prefilled fill the top slots."""
        return self.max_batch - len(self._prefilling) + index

    def _leave_prefill(self, index: int, to_slot: int | None = None) -> None:
        """Take ``_prefilling[index]`` out of the top slots (its cache to ``to_slot``, or
        dropped); the lowest one moves into the hole, so they stay contiguous."""
        lowest = self._prefill_slot(0)
        self.cache.swap(self._prefill_slot(index), lowest)  # now the lowest; it leaves from there
        if to_slot is not None:
            self.cache.move(lowest, to_slot)  # to_slot <= lowest: the running streams' next
        if to_slot != lowest:
            self.cache.clear(lowest)
        with self._lock:
            self._fed.pop(self._prefilling[index].id, None)
            self._prefilling[index] = self._prefilling[0]
            self._prefilling.pop(0)

    def _admit(self) -> None:
        """Waiting prompts take free slots while the pass has room for a token of each."""
        with self._lock:
            while (self._waiting and len(self._prefilling) < self.prefill_chunk
                   and len(self._running) + len(self._prefilling) < self.max_batch):
                request = self._waiting.popleft()
                self._prefilling.insert(0, request)
                self._fed[request.id] = 0
                self.cache.clear(self._prefill_slot(0))

    def _prefill_chunk(self) -> None:
        """Cache the next chunk of every prompt being prefilled, in one pass ``[k, T]``.

        Each row feeds its next ``T`` prompt tokens (``k * T <= prefill_chunk``), padded on the
        right where its prompt ends sooner; the padding's keys land past the row's length,
        which advances by its real tokens only, so they are hidden now and overwritten later.
        A prompt whose last token went in yields its first token and joins the running streams.
        """
        self._admit()
        if not self._prefilling:
            return
        rows = list(self._prefilling)
        left = [len(r.prompt) - self._fed[r.id] for r in rows]
        room = min(self.max_len - self._fed[r.id] for r in rows)  # padding stays in the cache
        width = max(1, min(max(left), room, self.prefill_chunk // len(rows)))
        chunks = [r.prompt[self._fed[r.id]:self._fed[r.id] + width] for r in rows]
        counts = [len(c) for c in chunks]
        ids = torch.tensor([c + [0] * (width - len(c)) for c in chunks], device=self.device)
        lo = self._prefill_slot(0)
        hidden = self.model.hidden(ids, cache=self.cache.rows(lo, lo + len(rows), counts))
        for index, request in enumerate(rows):
            self._fed[request.id] += counts[index]
        done = [i for i, r in enumerate(rows) if self._fed[r.id] == len(r.prompt)]
        if not done:
            return
        # A finished prompt's last token predicts its first new one: the head runs on those only.
        last = hidden[torch.tensor(done, device=self.device),
                      torch.tensor([counts[i] - 1 for i in done], device=self.device)]
        logits = self.model.layout().head(last[:, None])[:, -1]
        finished = [rows[i] for i in done]
        for request in finished:
            if request.sampling.seed is not None:
                generator = torch.Generator(device=self.device).manual_seed(request.sampling.seed)
                self._generators[request.id] = generator
        for request, token in zip(finished, self._choose(logits, finished), strict=True):
            slot = len(self._running)
            self._leave_prefill(self._prefilling.index(request), to_slot=slot)
            with self._lock:
                self._running.append(request)
            reason = self._emit(request, token)
            if reason is not None:
                self._retire(slot, reason)

    def _choose(self, logits: Tensor, requests: list[Request]) -> list[int]:
        """Each row's next token: argmax for the greedy ones (at once), else a draw from its own
        generator (seeded requests reproduce alone or in any batch)."""
        logits = logits.float()
        if self.vocab_limit is not None:
            logits[:, self.vocab_limit:] = float("-inf")  # ids past the tokenizer have no text
        chosen = logits.argmax(dim=-1).tolist()
        for row, request in enumerate(requests):
            s = request.sampling
            if s.temperature > 0.0:
                token = next_token(logits[row:row + 1], s.temperature, s.top_k, s.top_p,
                                   self._generators.get(request.id))
                chosen[row] = int(token)
        return chosen

    def _emit(self, request: Request, token: int) -> str | None:
        """Hand ``token`` to its request; the finish reason if it ends the request."""
        stop = token in request.sampling.stop_tokens
        request.push(token, stop)
        if stop:
            return "stop"
        if request.generated >= request.sampling.max_new_tokens:
            return "length"
        return None

    def _fail_all(self, message: str) -> None:
        for slot in reversed(range(len(self._running))):
            self._retire(slot, "error", message)
        for index in reversed(range(len(self._prefilling))):
            request = self._prefilling[index]
            self._leave_prefill(index)
            request.finish("error", message)
