"""Prompt-lookup decoding: the same tokens as plain greedy decoding, in fewer forward passes.

Random models with a tied head just repeat their last token (the embedding of a token scores
highest against itself), which would make every draft trivially right; these tests untie it, so
the greedy output wanders and then falls into loops of several tokens, as random GPTs do.
"""

from __future__ import annotations

import pytest
import torch

from llmbricks.core.kv_cache import KVCache
from llmbricks.core.tasks import generation
from llmbricks.core.tasks.generation import generate_ids, lookup_drafts
from tests.core.test_generation import KINDS, REGISTRY, tiny

VOCAB = 61


def untied(positional: str = "rope", n_kv_heads: int | None = None, **shape):
    return tiny(positional, n_kv_heads, head={"tie_weights": False}, **shape)


def passes(model) -> list[int]:
    """Record the number of tokens fed by every forward pass of ``model``."""
    fed: list[int] = []
    model.register_forward_hook(lambda module, args, output: fed.append(args[0].shape[1]))
    return fed


def assert_same(a: generation.GenerationResult, b: generation.GenerationResult) -> None:
    assert torch.equal(a.tokens, b.tokens)
    assert a.new_tokens == b.new_tokens and a.finished == b.finished


def prompts() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return {"repeats": torch.randint(0, VOCAB, (1, 6), generator=g).repeat(1, 3),
            "random": torch.randint(0, VOCAB, (1, 18), generator=g)}


def oracle(truth: list[int], wrong_every: int = 0, asked: list[tuple[int, int]] | None = None):
    """A stand-in for ``lookup_drafts`` that proposes the true greedy continuation.

    Every ``wrong_every``-th proposal has one wrong token, at a varying place, so verification
    must accept a prefix and roll the rest back. ``asked`` records (context length, max drafts).
    """
    calls = 0

    def drafts(context: list[int], max_ngram: int, max_drafts: int) -> list[int]:
        nonlocal calls
        calls += 1
        if asked is not None:
            asked.append((len(context), max_drafts))
        right = truth[len(context):len(context) + max_drafts]
        if wrong_every and right and calls % wrong_every == 0:
            at = calls % len(right)
            right[at] = (right[at] + 1) % VOCAB
        return right

    return drafts


# --- the n-gram lookup -------------------------------------------------------------------------


def test_lookup_copies_what_followed_the_most_recent_longest_match():
    #          0  1  2  3  4  5  6  7  8  9 10 11
    context = [1, 2, 3, 9, 9, 7, 2, 3, 8, 5, 2, 3]
    # "2 3" (n=2) occurs at 1 and 6; the most recent earlier one (6) is followed by 8 5 2 3
    # (and then, copying its own output, 8 5 2 3 again).
    assert lookup_drafts(context, 3, 10) == [8, 5, 2, 3, 8, 5, 2, 3, 8, 5]
    assert lookup_drafts(context, 3, 2) == [8, 5]
    # The longest n wins: "1 2 3" at 0 beats the more recent "2 3" at 6 and "3" at 7.
    assert lookup_drafts([1, 2, 3, 4, 5, 0, 2, 3, 6, 1, 2, 3], 3, 3) == [4, 5, 0]
    assert lookup_drafts([1, 2, 3, 4, 5, 0, 2, 3, 6, 1, 2, 3], 1, 3) == [6, 1, 2]
    # A copy that runs into its own output repeats with the distance as its period (LZ77).
    assert lookup_drafts([4, 7, 7, 7], 3, 5) == [7, 7, 7, 7, 7]
    assert lookup_drafts([4, 7, 4, 7, 4, 7], 3, 5) == [4, 7, 4, 7, 4]
    assert lookup_drafts([1, 2, 3, 9, 8, 1, 2, 3], 3, 7) == [9, 8, 1, 2, 3, 9, 8]
    # No earlier occurrence of even the last token, too short a context, or no room: nothing.
    assert lookup_drafts([1, 2, 3, 4], 3, 5) == []
    assert lookup_drafts([1], 3, 5) == []
    assert lookup_drafts(context, 3, 0) == []


def test_cache_truncate_rolls_back_and_checks_its_argument():
    cache = KVCache(n_layers=2, batch_size=1, n_kv_heads=2, max_len=8, head_dim=4)
    layer = cache.layer(0)
    layer.update(torch.ones(1, 2, 5, 4), torch.ones(1, 2, 5, 4))
    cache.advance(5)
    cache.truncate(3)
    assert cache.length == 3
    # The next pass writes at the rolled-back position and sees only what was kept.
    k, _ = layer.update(torch.full((1, 2, 1, 4), 2.0), torch.full((1, 2, 1, 4), 2.0))
    assert k.shape[-2] == 4 and k[..., 3, :].eq(2.0).all() and k[..., :3, :].eq(1.0).all()
    cache.truncate(3)  # a no-op is fine
    for bad in (4, -1):
        with pytest.raises(ValueError, match=f"cannot truncate the KV cache to {bad}: it holds 3"):
            cache.truncate(bad)


# --- exactness ---------------------------------------------------------------------------------


@pytest.mark.parametrize("positional,n_kv_heads", KINDS, ids=[f"{p}-kv{k}" for p, k in KINDS])
def test_prompt_lookup_gives_the_greedy_tokens(positional, n_kv_heads):
    model = untied(positional, n_kv_heads, context_length=96)
    fed = passes(model)
    for name, prompt in prompts().items():
        plain = generate_ids(model, prompt, max_new_tokens=60)
        fed.clear()
        looked = generate_ids(model, prompt, max_new_tokens=60, prompt_lookup=5)
        assert_same(looked, plain)
        # Every kind's greedy output falls into a loop within 60 tokens: drafts get accepted.
        assert len(fed) < 60, name
        assert fed[0] > 18 or name == "random"  # the repeating prompt drafted from itself


@pytest.mark.parametrize("positional,n_kv_heads", KINDS, ids=[f"{p}-kv{k}" for p, k in KINDS])
def test_verified_drafts_are_exact_for_every_kind(positional, n_kv_heads, monkeypatch):
    """Drafts that are mostly right: long accepted runs and rejections at every offset."""
    model = untied(positional, n_kv_heads, context_length=96)
    prompt = prompts()["random"]
    plain = generate_ids(model, prompt, max_new_tokens=40)
    monkeypatch.setattr(generation, "lookup_drafts", oracle(plain.tokens[0].tolist(), 3))
    fed = passes(model)
    assert_same(generate_ids(model, prompt, max_new_tokens=40, prompt_lookup=4), plain)
    assert len(fed) <= 40 // 3


def test_mha_attention_and_a_longer_lookup():
    model = untied("rope", 2, attention="mha", context_length=96)
    for prompt in prompts().values():
        plain = generate_ids(model, prompt, max_new_tokens=50)
        for n, ngram in ((1, 1), (3, 2), (20, 4)):
            looked = generate_ids(model, prompt, max_new_tokens=50, prompt_lookup=n, lookup_ngram=ngram)
            assert_same(looked, plain)


def test_stop_token_inside_an_accepted_draft(monkeypatch):
    model = untied("rope", context_length=96)
    prompt = prompts()["random"]
    free = generate_ids(model, prompt, max_new_tokens=30).new_tokens[0]
    # The first pass (the prefill) accepts drafts for steps 0..4; stop at a token that first
    # appears at step 2 or 3, so the accepted tokens after it must be dropped.
    step = next(s for s in (2, 3) if free[s] not in free[:s])
    stop = free[step]
    plain = generate_ids(model, prompt, max_new_tokens=30, stop_token=stop)
    assert plain.new_tokens[0] == free[:step + 1] and plain.finished == [True]
    monkeypatch.setattr(generation, "lookup_drafts", oracle(prompt[0].tolist() + free))
    fed = passes(model)
    looked = generate_ids(model, prompt, max_new_tokens=30, stop_token=stop, prompt_lookup=4)
    assert_same(looked, plain)
    assert looked.tokens.shape[1] == 18 + step + 1 and fed == [18 + 4]


def test_real_lookup_stops_like_greedy_at_every_token():
    model = untied("rope", context_length=96)
    for prompt in prompts().values():
        free = generate_ids(model, prompt, max_new_tokens=40).new_tokens[0]
        for stop in sorted(set(free)):
            plain = generate_ids(model, prompt, max_new_tokens=40, stop_token=stop, pad_token=0)
            looked = generate_ids(model, prompt, max_new_tokens=40, stop_token=stop, pad_token=0,
                                  prompt_lookup=5)
            assert_same(looked, plain)


def test_max_new_tokens_cuts_the_last_accepted_run(monkeypatch):
    model = untied("t5", context_length=96)
    prompt = prompts()["random"]
    truth = generate_ids(model, prompt, max_new_tokens=13).tokens[0].tolist()
    fed = passes(model)
    for n in range(14):
        plain = generate_ids(model, prompt, max_new_tokens=n)
        asked: list[tuple[int, int]] = []
        fed.clear()
        with monkeypatch.context() as patch:
            patch.setattr(generation, "lookup_drafts", oracle(truth, asked=asked))
            looked = generate_ids(model, prompt, max_new_tokens=n, prompt_lookup=4)
        assert_same(looked, plain)
        assert looked.tokens.shape[1] == 18 + n
        assert len(fed) == -(-n // 5)  # 5 tokens a pass (4 drafts + 1), the last run cut
        # Never asked for more drafts than leave room for the pass's own token.
        assert all(length - 18 + drafts + 1 <= n for length, drafts in asked)
    # The real lookup, too.
    for n in range(14):
        assert_same(generate_ids(model, prompt, max_new_tokens=n, prompt_lookup=3),
                    generate_ids(model, prompt, max_new_tokens=n))


def test_streaming_calls_back_once_per_token_in_order():
    model = untied("rope", context_length=96)
    prompt = prompts()["repeats"]
    seen: dict[int, list[tuple[int, list[int]]]] = {0: [], 5: []}
    for n in seen:
        generate_ids(model, prompt, max_new_tokens=40, prompt_lookup=n,
                     on_token=lambda step, ids, n=n: seen[n].append((step, ids.tolist())))
    assert seen[5] == seen[0] and [s for s, _ in seen[0]] == list(range(40))


def test_learned_positions_crossing_the_context_window(monkeypatch):
    """A table of 16 positions: drafts never reach past it, and past it every step restarts."""
    model = untied("absolute", context_length=16)
    for length in (10, 15, 16, 20):  # in the window, at its edge, and longer than it
        prompt = torch.randint(0, VOCAB, (1, 5), generator=torch.Generator().manual_seed(4))
        prompt = prompt.repeat(1, 4)[:, :length]
        plain = generate_ids(model, prompt, max_new_tokens=30)
        assert_same(generate_ids(model, prompt, max_new_tokens=30, use_cache=False), plain)
        assert_same(generate_ids(model, prompt, max_new_tokens=30, prompt_lookup=5), plain)
        asked: list[tuple[int, int]] = []
        with monkeypatch.context() as patch:
            patch.setattr(generation, "lookup_drafts", oracle(plain.tokens[0].tolist(), 2, asked))
            looked = generate_ids(model, prompt, max_new_tokens=30, prompt_lookup=5)
        assert_same(looked, plain)
        # The pass scores positions up to length + drafts - 1 < 16 (the model raises otherwise).
        assert all(drafts == 0 or context + drafts <= 16 for context, drafts in asked)
        assert any(drafts > 0 for _, drafts in asked) == (length < 16)


def test_max_context_with_lookup():
    model = untied("rope", context_length=96)
    for prompt in prompts().values():
        plain = generate_ids(model, prompt, max_new_tokens=30, max_context=24)
        assert_same(generate_ids(model, prompt, max_new_tokens=30, max_context=24, prompt_lookup=5),
                     plain)


def test_prompt_lookup_errors():
    model = untied()
    with pytest.raises(ValueError, match=r"prompt_lookup must be >= 0 \(0 = off\), got -1"):
        generate_ids(model, [[1, 2]], prompt_lookup=-1)
    with pytest.raises(ValueError, match=r"prompt lookup needs greedy decoding \(temperature 0\)"):
        generate_ids(model, [[1, 2]], prompt_lookup=3, temperature=0.8)
    with pytest.raises(ValueError, match="needs a batch of 1, got 2 rows: rows accept different"):
        generate_ids(model, [[1, 2], [3, 4]], prompt_lookup=3)
    with pytest.raises(ValueError, match=r"needs the KV cache \(use_cache=True\)"):
        generate_ids(model, [[1, 2]], prompt_lookup=3, use_cache=False)
    with pytest.raises(ValueError, match="lookup_ngram must be >= 1, got 0"):
        generate_ids(model, [[1, 2]], prompt_lookup=3, lookup_ngram=0)
    # Off (0) accepts everything it always did.
    generate_ids(model, [[1, 2], [3, 4]], max_new_tokens=2, temperature=0.8, use_cache=False)


@pytest.mark.data_files("gpt2.tiktoken")
def test_generate_passes_prompt_lookup_through():
    from llmbricks.core.build import build_model, build_tokenizer
    from llmbricks.core.config import load_config

    config = load_config({"model": {"preset": "nanogpt-baby", "tokenizer": "tiktoken",
                                    "n_layers": 1, "emb_dim": 64, "n_heads": 2,
                                    "head": {"tie_weights": False}}}, registry=REGISTRY)
    tokenizer = build_tokenizer(config, REGISTRY)
    torch.manual_seed(0)
    model = build_model(config, REGISTRY, tokenizer=tokenizer)
    text = "the cat sat on the mat, the cat sat on the"
    plain = generation.generate(model, tokenizer, text, max_new_tokens=30)
    assert generation.generate(model, tokenizer, text, max_new_tokens=30, prompt_lookup=4) == plain
    with pytest.raises(ValueError, match="needs a batch of 1"):
        generation.generate(model, tokenizer, [text, text], prompt_lookup=4)
