"""Autoregressive sampling with a preallocated KV cache.

The first call is a prefill of the whole prompt; then one token per step, its position offset by
the cache length. Each row of a batch stops on its own stop token and is padded after it. Tables
with a fixed length (learned absolute positions) crop the context to their last
``positions_limit()`` tokens; components without a limit extend past ``context_length``.

Prompt-lookup decoding (greedy, batch 1) guesses the next tokens by copying what followed the
last occurrence of the current n-gram in the context, and checks all guesses in one forward pass:
same tokens as plain greedy, fewer passes (each of which reads every weight) when text repeats.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..config import MAX_CONTEXT, MAX_SEED
from ..errors import ConfigError
from ..interfaces import Model, Tokenizer
from ..kv_cache import KVCache
from ..store.text_input import check_text

#: The most new tokens one call may ask for (the configs' bound on a context): far past any real
#: use, and refused before a KV cache of that many positions is allocated.
MAX_NEW_TOKENS = MAX_CONTEXT

#: The CLI flag of each parameter, named in the CLI's messages (the API names the parameter).
FLAGS = {"max_new_tokens": "--max-new-tokens", "temperature": "--temperature", "top_k": "--top-k",
         "top_p": "--top-p", "seed": "--seed", "stop": "--stop", "prompt_lookup": "--prompt-lookup",
         "max_context": "--max-context", "lookup_ngram": "--lookup-ngram", "prompt": "--prompt"}


class GenerationError(ConfigError, ValueError):
    """A generation parameter or prompt no generation can use: a usage mistake (exit 2).

    Also a ``ValueError``, which these checks raised before, so callers that catch one still do.
    """


def _refuse(name: str, value: Any, rule: str, cli: bool) -> GenerationError:
    """``--top-p 1.5: top-p must be in (0, 1]`` (CLI) or ``top_p must be in (0, 1], got 1.5``."""
    shown = repr(value) if isinstance(value, str) else str(value)
    if cli:
        flag = FLAGS[name]
        return GenerationError(f"{flag} {shown}: {flag.lstrip('-')} {rule}")
    return GenerationError(f"{name} {rule}, got {shown}")


def _whole(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def check_generation_params(*, max_new_tokens: Any = 50, temperature: Any = 0.0, top_k: Any = None,
                            top_p: Any = None, seed: Any = None, stop: Any = None,
                            max_context: Any = None, prompt_lookup: Any = 0, lookup_ngram: Any = 3,
                            cli: bool = False) -> None:
    """Refuse, in one line, a value no generation can use; the CLI and the API share it.

    ``cli`` names the flag and the value as typed (``--top-p 1.5: ...``); otherwise the
    parameter. ``None`` turns ``top_k``, ``top_p``, ``seed``, ``stop`` and ``max_context`` off.
    """
    if not _whole(max_new_tokens) or not 0 <= max_new_tokens <= MAX_NEW_TOKENS:
        raise _refuse("max_new_tokens", max_new_tokens,
                      f"must be a whole number from 0 to {MAX_NEW_TOKENS}", cli)
    if not _number(temperature) or not math.isfinite(temperature) or temperature < 0:
        raise _refuse("temperature", temperature, "must be a finite number >= 0 (0 = greedy)", cli)
    if top_k is not None and (not _whole(top_k) or top_k < 1):
        raise _refuse("top_k", top_k, "must be a whole number >= 1", cli)
    if top_p is not None and (not _number(top_p) or not 0.0 < top_p <= 1.0):
        raise _refuse("top_p", top_p, "must be in (0, 1]", cli)
    if seed is not None and (not _whole(seed) or not 0 <= seed <= MAX_SEED):
        raise _refuse("seed", seed, f"must be a whole number from 0 to {MAX_SEED}", cli)
    if stop is not None and (not isinstance(stop, str) or not stop):
        raise _refuse("stop", stop, "must name a special token of the tokenizer, such as "
                      "'<|endoftext|>'", cli)
    if max_context is not None and (not _whole(max_context) or not 1 <= max_context <= MAX_CONTEXT):
        raise _refuse("max_context", max_context, f"must be a whole number from 1 to {MAX_CONTEXT}",
                      cli)
    if not _whole(prompt_lookup) or prompt_lookup < 0:
        raise _refuse("prompt_lookup", prompt_lookup, "must be >= 0 (0 = off)", cli)
    if not _whole(lookup_ngram) or lookup_ngram < 1:
        raise _refuse("lookup_ngram", lookup_ngram, "must be >= 1", cli)


def stop_token_id(tokenizer: Tokenizer, stop: str | None, *, cli: bool = False) -> int | None:
    """The id of the special token ``stop``.

    By default: the tokenizer's own end-of-sequence token when it names one (a Hugging Face
    tokenizer's ``eos_token``, e.g. ``<|eot_id|>``), else ``<|endoftext|>`` when it has it.
    """
    check_generation_params(stop=stop, cli=cli)
    specials = tokenizer.special_tokens
    if stop is None:
        eos = getattr(tokenizer, "eos_token", None)
        return specials.get(eos) if eos in specials else specials.get("<|endoftext|>")
    if stop not in specials:
        known = ", ".join(repr(name) for name in sorted(specials)[:5])
        has = f"it has {known}" if known else "it has none"
        raise _refuse("stop", stop, f"is not a special token of this tokenizer ({has})", cli)
    return specials[stop]


@dataclass(frozen=True)
class GenerationResult:
    """Prompt plus new tokens per row (stopped rows padded), and how far each row got."""

    tokens: Tensor          # [B, T_prompt + steps]
    new_tokens: list[list[int]]  # per row, the generated ids up to and including its stop token
    finished: list[bool]    # whether the row emitted its stop token


def filter_logits(logits: Tensor, top_k: int | None = None, top_p: float | None = None) -> Tensor:
    """Mask everything outside the top-k and outside the nucleus of mass ``top_p`` with -inf."""
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        ordered, order = torch.sort(logits, dim=-1, descending=True)
        cumulative = torch.softmax(ordered, dim=-1).cumsum(dim=-1)
        # Drop a token when the mass before it already reaches top_p (the first always stays).
        drop = (cumulative - torch.softmax(ordered, dim=-1)) >= top_p
        logits = logits.scatter(-1, order, ordered.masked_fill(drop, float("-inf")))
    return logits


class _VocabLimited:
    """A model whose logits past ``limit`` are -inf, so no id without text is ever chosen."""

    def __init__(self, model: Model, limit: int) -> None:
        self.model, self.limit = model, limit

    def __call__(self, *args: Any, **kwargs: Any) -> Tensor:
        logits = self.model(*args, **kwargs)
        return logits.index_fill(-1, torch.arange(self.limit, logits.shape[-1],
                                                  device=logits.device), float("-inf"))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


def next_token(logits: Tensor, temperature: float = 0.0, top_k: int | None = None,
               top_p: float | None = None, generator: torch.Generator | None = None) -> Tensor:
    """``[B, V]`` logits -> ``[B]`` ids: argmax at temperature 0, else sample softmax(l / T)."""
    if temperature <= 0.0:
        return logits.argmax(dim=-1)
    if temperature < 1e-3:  # logits / T could overflow to inf; shifting by the max changes no probability
        logits = logits - logits.amax(dim=-1, keepdim=True)
    probs = torch.softmax(filter_logits(logits / temperature, top_k, top_p), dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def lookup_drafts(context: Sequence[int], max_ngram: int, max_drafts: int) -> list[int]:
    """Up to ``max_drafts`` guesses at the next tokens, copied from earlier in ``context``.

    Prompt lookup (Saxena 2023): text that repeats itself (code, quotes, names, loops) is likely
    to go on as it went on before. Find the most recent earlier occurrence of the last ``n``
    tokens, longest ``n`` first (``max_ngram`` down to 1), and propose the tokens that followed
    it. No occurrence: no drafts.

    The copy may run into the tokens it is producing, as in LZ77: an occurrence ``s`` tokens
    back predicts a loop of period ``s``, so draft ``j`` is ``context[start + j]``, or draft
    ``j - s`` once that is past the end. Without it, a run ``x x x x`` (the most recent earlier
    "x x x" is one token back) would only ever propose one more ``x``.
    """
    if max_drafts <= 0:
        return []
    end = len(context)
    for n in range(min(max_ngram, end - 1), 0, -1):
        tail = list(context[end - n:])
        # Occurrences start at i = end - n - 1 down to 0 (i = end - n is the tail itself), so the
        # continuation context[i + n:] always holds at least one token.
        for i in range(end - n - 1, -1, -1):
            if context[i + n - 1] == tail[-1] and list(context[i:i + n]) == tail:
                start, drafts = i + n, []
                for j in range(max_drafts):
                    drafts.append(context[start + j] if start + j < end else drafts[start + j - end])
                return drafts
    return []


def verify_drafts(model: Model, cache: KVCache, unfed: Tensor, drafts: list[int]) -> Tensor:
    """One cached forward pass over ``unfed`` tokens ``[1, U]`` and ``drafts``: ``[1, a + 1]`` ids.

    The logits at each fed position predict the token after it. With drafts d_1..d_k after the
    last unfed token, the greedy picks g_0..g_k at the last k + 1 positions are what plain greedy
    decoding would choose at each of those steps, as long as every draft before was right:

        a = the largest i <= k with d_j == g_(j-1) for all j <= i
        tokens = d_1..d_a, g_a  (= g_0..g_a)

    so a pass always gives at least the model's own next token (a = 0). The cache then holds
    every unfed token and the ``a`` accepted drafts; the rejected ones are rolled back.
    """
    k = len(drafts)
    feed = torch.cat([unfed, unfed.new_tensor([drafts])], dim=1) if k else unfed
    greedy = model(feed, cache=cache)[:, -(k + 1):].float().argmax(dim=-1)  # [1, k + 1]
    guesses = greedy[0].tolist()
    accepted = 0
    while accepted < k and drafts[accepted] == guesses[accepted]:
        accepted += 1
    cache.truncate(cache.length - (k - accepted))
    return greedy[:, :accepted + 1]


def _check_prompt_lookup(prompt_lookup: int, lookup_ngram: int, temperature: float, batch: int,
                         use_cache: bool) -> None:
    """Prompt lookup is exact only for greedy decoding of one row, and it needs the cache."""
    if not prompt_lookup:
        return
    if temperature > 0.0:
        raise GenerationError("prompt lookup needs greedy decoding (temperature 0): it keeps a draft "
                         f"only where it equals the argmax, got temperature {temperature}")
    if batch > 1:
        raise GenerationError(f"prompt lookup needs a batch of 1, got {batch} rows: rows accept "
                         "different numbers of drafts; generate them one at a time")
    if not use_cache:
        raise GenerationError("prompt lookup needs the KV cache (use_cache=True): it rolls the cache "
                         "back past rejected drafts")


def check_generates(model: Model) -> None:
    """A classifier (a head with ``per_token = False``) has no next-token logits to sample
    (``generate``, ``llmbricks chat`` and the serving engine all refuse it so)."""
    head = model.layout().head
    if not head.per_token:
        raise ConfigError(f"this model's head ('{head.name}') gives one output per text, not "
                          "next-token logits: it cannot generate; use `llmbricks classify`")


def _prompt_ids(prompt: Tensor | Sequence[Sequence[int]], device: torch.device) -> Tensor:
    """``[B, T]`` ids on ``device``; a flat list or 1-d tensor is one row. Refused: no tokens."""
    try:
        ids = torch.as_tensor(prompt, dtype=torch.long, device=device)
    except (TypeError, ValueError, RuntimeError, OverflowError) as exc:
        raise GenerationError("the prompt must be token ids: a [B, T] tensor or equal-length lists "
                              f"of integers ({exc})") from None
    if ids.dim() == 1:
        ids = ids.unsqueeze(0)
    if ids.dim() != 2 or ids.shape[1] == 0:
        raise GenerationError("the prompt is empty: give at least one token" if ids.dim() == 2
                              else f"the prompt must be [B, T] token ids, got shape {list(ids.shape)}")
    return ids


@torch.inference_mode()
def generate_ids(model: Model, prompt: Tensor | Sequence[Sequence[int]], *,
                 max_new_tokens: int = 50, temperature: float = 0.0, top_k: int | None = None,
                 top_p: float | None = None, seed: int | None = None,
                 stop_token: int | None = None, pad_token: int | None = None,
                 use_cache: bool = True, max_context: int | None = None,
                 on_token: Callable[[int, Tensor], None] | None = None,
                 prompt_lookup: int = 0, lookup_ngram: int = 3,
                 vocab_limit: int | None = None) -> GenerationResult:
    """Generate up to ``max_new_tokens`` for each row of ``prompt`` (``[B, T]``, equal lengths).

    ``vocab_limit`` keeps the ids below it: a checkpoint's embedding table is often padded past
    its tokenizer's vocabulary (Qwen: 151,936 rows for 151,665 tokens), and an id in the padding
    has no text.
    ``on_token(step, ids[B])`` streams each new column. ``max_context`` crops what the model sees
    to the last ``max_context`` tokens (at most the positional table's length, if it has one).
    ``prompt_lookup=N`` (greedy, batch 1, cache) verifies up to N tokens copied from the context
    (after its last ``lookup_ngram``-gram match) per forward pass; the tokens are the same.
    """
    check_generation_params(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k,
                            top_p=top_p, seed=seed, max_context=max_context,
                            prompt_lookup=prompt_lookup, lookup_ngram=lookup_ngram)
    check_generates(model)
    device = next(model.parameters()).device
    if vocab_limit is not None and vocab_limit < model.dims.vocab_size:
        model = _VocabLimited(model, vocab_limit)  # type: ignore[assignment]
    ids = _prompt_ids(prompt, device)
    _check_prompt_lookup(prompt_lookup, lookup_ngram, temperature, ids.shape[0], use_cache)
    was_training = model.training
    model.eval()
    generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
    limit = model.positions_limit()
    window = min(x for x in (limit, max_context) if x is not None) if (limit or max_context) else None
    batch = ids.shape[0]
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    pad = pad_token if pad_token is not None else (stop_token if stop_token is not None else 0)
    cache = None
    fed = 0  # tokens of `ids` the cache holds (from the start of the visible context)
    pending: list[Tensor] = []  # tokens already decided by the last forward pass, [B] each
    try:
        for step in range(max_new_tokens):
            # `pending` holds drafts that an earlier pass verified: their steps need no pass.
            if not pending and use_cache:
                if cache is None or window is not None and ids.shape[1] > window:
                    # (Re)start: a fresh cache; the whole visible context is unfed (prefill).
                    visible = ids.shape[1] if window is None else min(ids.shape[1], window)
                    room = visible + max_new_tokens - step
                    cache = model.new_cache(batch, room if window is None else min(room, window))
                    fed = ids.shape[1] - visible
                if prompt_lookup:
                    # Drafts fit what is left to generate (the pass adds one token of its own)
                    # and the cache's free slots after the unfed tokens; the cache is never
                    # longer than the window, so no draft takes a position past it.
                    free = cache.max_len - cache.length - (ids.shape[1] - fed)
                    n_drafts = min(prompt_lookup, max_new_tokens - step - 1, free)
                    drafts = lookup_drafts(ids[0].tolist(), lookup_ngram, n_drafts)
                    pending = list(verify_drafts(model, cache, ids[:, fed:], drafts).unbind(1))
                else:
                    logits = model(ids[:, fed:], cache=cache)[:, -1]
                    pending = [next_token(logits.float(), temperature, top_k, top_p, generator)]
                fed = ids.shape[1] + len(pending) - 1  # all but the newest token are cached
            elif not pending:
                context = ids if window is None else ids[:, -window:]
                logits = model(context)[:, -1]
                pending = [next_token(logits.float(), temperature, top_k, top_p, generator)]
            token = pending.pop(0)
            token = torch.where(finished, torch.full_like(token, pad), token)
            ids = torch.cat([ids, token[:, None]], dim=1)
            if on_token is not None:
                on_token(step, token)
            if stop_token is not None:
                finished |= token == stop_token
                if bool(finished.all()):
                    break
    finally:
        model.train(was_training)
    start = ids.shape[1] - (step + 1) if max_new_tokens else ids.shape[1]
    new_tokens = []
    for row in ids[:, start:].tolist():
        if stop_token is not None and stop_token in row:
            row = row[: row.index(stop_token) + 1]
        new_tokens.append(row)
    return GenerationResult(tokens=ids, new_tokens=new_tokens, finished=finished.tolist())


def _prompt_texts(prompt: str | Sequence[str]) -> list[str]:
    """The prompts as a list: each a non-empty string that encodes as UTF-8."""
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    if not prompts:
        raise GenerationError("no prompt: give a string, or a list of strings for a batch")
    for i, text in enumerate(prompts):
        where = "the prompt" if isinstance(prompt, str) else f"prompt {i}"
        if not isinstance(text, str):
            raise GenerationError(f"{where} must be a string, got {type(text).__name__}")
        if not text:
            raise GenerationError(f"{where} is empty: give some text to continue")
        check_text(text, where)
    return prompts


def generate(model: Model, tokenizer: Tokenizer, prompt: str | Sequence[str], *,
             max_new_tokens: int = 50, temperature: float = 0.0, top_k: int | None = None,
             top_p: float | None = None, seed: int | None = None, stop: str | None = None,
             use_cache: bool = True, max_context: int | None = None,
             on_text: Callable[[int, str], None] | None = None,
             prompt_lookup: int = 0,
             prompt_ids: Sequence[Sequence[int]] | None = None) -> str | list[str]:
    """Continue ``prompt`` (a string or a batch of strings of equal token length).

    ``stop`` names a special token (default: the tokenizer's ``eos_token``, else ``<|endoftext|>``
    when it has it) that ends a row. ``on_text(row, text)`` streams each row's new text as it is
    generated. ``prompt_lookup=N`` checks up to N tokens copied from the context per forward pass
    (greedy, one prompt): the same text, faster when it repeats the prompt or itself.

    The prompts are encoded with every special token allowed, unless ``prompt_ids`` gives their
    ids (one list per prompt): an instruction's prompt is encoded so that only its template's
    special tokens are ids (``instruction.encode_prompt``), and must reach the model as such.
    """
    check_generation_params(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k,
                            top_p=top_p, seed=seed, stop=stop, max_context=max_context,
                            prompt_lookup=prompt_lookup)
    check_generates(model)
    if tokenizer is None:
        raise GenerationError("generate needs the model's tokenizer to encode the prompt; pass "
                              "token ids to generate_ids instead")
    prompts = _prompt_texts(prompt)
    if prompt_ids is None:
        encoded = [tokenizer.encode(p, allowed_special="all") for p in prompts]
    else:
        encoded = [list(ids) for ids in prompt_ids]
        if len(encoded) != len(prompts):
            raise GenerationError(f"prompt_ids holds {len(encoded)} prompts' ids for "
                                  f"{len(prompts)} prompts; give one list per prompt")
    if len({len(e) for e in encoded}) > 1:
        raise GenerationError("prompts in one batch must have the same length in tokens "
                              f"(got {sorted({len(e) for e in encoded})}); generate them separately")
    stop_token = stop_token_id(tokenizer, stop)

    # Stream whole characters: a byte-level token can end inside a UTF-8 sequence, so decode the
    # row so far and hold back a trailing replacement character until the next token completes it.
    generated: list[list[int]] = [[] for _ in prompts]
    shown = [0] * len(prompts)
    result_done = [False] * len(prompts)

    def stream(step: int, tokens: Tensor) -> None:
        if on_text is None:
            return
        for row, token in enumerate(tokens.tolist()):
            if result_done[row]:
                continue
            if token == stop_token:
                result_done[row] = True
                continue
            generated[row].append(token)
            text = tokenizer.decode(generated[row])
            if text.endswith("\ufffd") and step + 1 < max_new_tokens:
                continue
            on_text(row, text[shown[row]:])
            shown[row] = len(text)

    result = generate_ids(model, encoded, max_new_tokens=max_new_tokens, temperature=temperature,
                          top_k=top_k, top_p=top_p, seed=seed, stop_token=stop_token,
                          use_cache=use_cache, max_context=max_context, on_token=stream,
                          prompt_lookup=prompt_lookup, vocab_limit=tokenizer.vocab_size)
    texts = []
    for row in result.new_tokens:
        if stop_token is not None and row and row[-1] == stop_token:
            row = row[:-1]
        texts.append(tokenizer.decode(row))
    return texts[0] if isinstance(prompt, str) else texts


def load_generator(path: str | Path, device: torch.device | str = "cpu") -> tuple[Any, Model, Tokenizer]:
    """``(config, model, tokenizer)`` of a run or model directory, ready to generate.

    A directory saved without ``tokenizer/`` gets its config's tokenizer rebuilt (from its data
    if it learns one); a failure says why the data was needed. ``generate``, ``chat`` and the
    serving engine all load through here.
    """
    from ..errors import LlmbricksError
    from ..store.runs import load_run
    from ..store.token_cache import ready_tokenizer

    config, model, tokenizer = load_run(path, device)
    if tokenizer is None:
        try:
            tokenizer = ready_tokenizer(config)[0]
        except LlmbricksError as exc:
            exc.args = (f"{path} has no saved tokenizer (tokenizer/ is missing), and its "
                        f"config's could not be rebuilt: {exc}",)
            raise exc from None
    return config, model, tokenizer
