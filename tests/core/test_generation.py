"""Generation: cached equals uncached at every step, batches stop per row, sampling filters."""

from __future__ import annotations

import pytest
import torch

from llmbricks.core.build import build_model, build_tokenizer
from llmbricks.core.config import load_config
from llmbricks.core.registry import Registry
from llmbricks.core.tasks.generation import filter_logits, generate, generate_ids, next_token

REGISTRY = Registry()
SHAPE = {"vocab_size": 61, "context_length": 24, "emb_dim": 32, "n_layers": 2, "n_heads": 4,
         "dropout": 0.0}
KINDS = [(p, kv) for p in REGISTRY.names("positional") for kv in (None, 2)]


def tiny(positional: str = "none", n_kv_heads: int | None = None, attention: str = "sdpa", **shape):
    config = load_config({"model": {**SHAPE, **shape, "positional": positional,
                                    "attention": {"name": attention, "n_kv_heads": n_kv_heads}}},
                         registry=REGISTRY)
    torch.manual_seed(0)
    return build_model(config, REGISTRY).eval()


def stepwise_logits(model, prompt: torch.Tensor, steps: int, use_cache: bool) -> list[torch.Tensor]:
    """Greedy decoding that records the logits of every step."""
    ids, out = prompt, []
    cache = model.new_cache(prompt.shape[0], prompt.shape[1] + steps) if use_cache else None
    with torch.no_grad():
        for step in range(steps):
            feed = ids if (not use_cache or step == 0) else ids[:, -1:]
            logits = model(feed, cache=cache)[:, -1]
            out.append(logits)
            ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)
    return out


@pytest.mark.parametrize("positional,n_kv_heads", KINDS, ids=[f"{p}-kv{k}" for p, k in KINDS])
def test_cached_logits_equal_uncached_at_every_step(positional, n_kv_heads):
    model = tiny(positional, n_kv_heads)
    prompt = torch.randint(0, 61, (3, 5))
    cached = stepwise_logits(model, prompt, 19, use_cache=True)
    full = stepwise_logits(model, prompt, 19, use_cache=False)
    for step, (a, b) in enumerate(zip(cached, full, strict=True)):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4, msg=f"step {step}")
    with_cache = generate_ids(model, prompt, max_new_tokens=19)
    without = generate_ids(model, prompt, max_new_tokens=19, use_cache=False)
    assert torch.equal(with_cache.tokens, without.tokens)


@pytest.mark.parametrize("positional", REGISTRY.names("positional"))
def test_rows_stop_on_their_own(positional):
    model = tiny(positional)
    prompt = torch.randint(0, 61, (4, 3), generator=torch.Generator().manual_seed(1))
    free = generate_ids(model, prompt, max_new_tokens=12).tokens[:, 3:]
    # Pick a stop token that row 0 emits early and some other row emits later or never.
    stop = int(free[0, 1])
    first = [row.index(stop) if stop in row else None for row in free.tolist()]
    result = generate_ids(model, prompt, max_new_tokens=12, stop_token=stop, pad_token=0)
    for row, at in enumerate(first):
        expected = free[row].tolist()
        if at is None:
            assert result.new_tokens[row] == expected[: len(result.new_tokens[row])]
            assert not result.finished[row]
        else:
            assert result.new_tokens[row] == expected[: at + 1]
            assert result.finished[row]
            assert set(result.tokens[row, 3 + at + 1:].tolist()) <= {0}  # padded after its stop
    # Each row equals the same prompt generated alone.
    for row in range(4):
        alone = generate_ids(model, prompt[row:row + 1], max_new_tokens=12, stop_token=stop)
        assert alone.new_tokens[0] == result.new_tokens[row]


def test_learned_positions_crop_to_the_context_and_relative_ones_extend():
    absolute = tiny("absolute", context_length=8)
    prompt = torch.randint(0, 61, (2, 6))
    long = generate_ids(absolute, prompt, max_new_tokens=20)
    assert long.tokens.shape == (2, 26)
    assert torch.equal(long.tokens, generate_ids(absolute, prompt, max_new_tokens=20, use_cache=False).tokens)
    for kind in set(REGISTRY.names("positional")) - {"absolute"}:
        model = tiny(kind, context_length=8)
        if model.positional.positions_limit() is None:
            out = generate_ids(model, prompt, max_new_tokens=20)
            assert out.tokens.shape == (2, 26)
            assert torch.equal(out.tokens, generate_ids(model, prompt, max_new_tokens=20, use_cache=False).tokens)


def test_max_context_crops_what_the_model_sees():
    model = tiny("none")
    prompt = torch.randint(0, 61, (1, 10))
    cropped = generate_ids(model, prompt, max_new_tokens=6, max_context=4, use_cache=False)
    # By hand: each step sees only the last 4 tokens.
    ids = prompt
    with torch.no_grad():
        for _ in range(6):
            ids = torch.cat([ids, model(ids[:, -4:])[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(cropped.tokens, ids)
    assert torch.equal(generate_ids(model, prompt, max_new_tokens=6, max_context=4).tokens, ids)


def test_top_k_and_top_p_filters():
    logits = torch.tensor([[1.0, 4.0, 3.0, 2.0]])
    assert torch.isinf(filter_logits(logits, top_k=2)).tolist() == [[True, False, False, True]]
    probs = torch.softmax(logits, -1)  # [0.032, 0.644, 0.237, 0.087]
    assert probs[0, 1] < 0.7
    kept = ~torch.isinf(filter_logits(logits, top_p=0.7))
    assert kept.tolist() == [[False, True, True, False]]  # 0.644 < 0.7, so the second joins
    assert (~torch.isinf(filter_logits(logits, top_p=0.5))).tolist() == [[False, True, False, False]]
    assert next_token(logits).tolist() == [1]


def test_seeded_sampling_is_reproducible():
    model = tiny()
    prompt = torch.randint(0, 61, (2, 4))
    a = generate_ids(model, prompt, max_new_tokens=10, temperature=1.0, top_k=10, seed=7)
    b = generate_ids(model, prompt, max_new_tokens=10, temperature=1.0, top_k=10, seed=7)
    c = generate_ids(model, prompt, max_new_tokens=10, temperature=1.0, top_k=10, seed=8)
    assert torch.equal(a.tokens, b.tokens) and not torch.equal(a.tokens, c.tokens)


def test_bad_arguments():
    model = tiny()
    with pytest.raises(ValueError, match="the prompt is empty"):
        generate_ids(model, torch.zeros(1, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="top_p must be in"):
        generate_ids(model, [[1, 2]], top_p=1.5)


@pytest.mark.slow
@pytest.mark.data_files("gpt2.tiktoken")
def test_the_books_golden_generation():
    """seed 123, untrained 124M, "Hello, I am", 10 greedy tokens (the book, chapter 4)."""
    config = load_config({"model": {"preset": "gpt2-small", "tokenizer": "tiktoken"}}, registry=REGISTRY)
    torch.manual_seed(123)
    model = build_model(config, REGISTRY)
    tokenizer = build_tokenizer(config, REGISTRY)
    result = generate_ids(model, [tokenizer.encode("Hello, I am")], max_new_tokens=10)
    assert result.tokens[0].tolist() == [15496, 11, 314, 716, 27018, 24086, 47843, 30961, 42348,
                                         7267, 49706, 43231, 47062, 34657]
    text = generate(model, tokenizer, "Hello, I am", max_new_tokens=10)
    assert text == " Featureiman Byeswickattribute argue logger Normandy Compton analogous"


def test_rows_stop_the_same_with_and_without_the_cache():
    for kind in REGISTRY.names("positional"):
        model = tiny(kind, n_kv_heads=2)
        prompt = torch.randint(0, 61, (3, 4), generator=torch.Generator().manual_seed(2))
        stop = int(generate_ids(model, prompt, max_new_tokens=6).tokens[1, 6])
        cached = generate_ids(model, prompt, max_new_tokens=15, stop_token=stop)
        uncached = generate_ids(model, prompt, max_new_tokens=15, stop_token=stop, use_cache=False)
        assert torch.equal(cached.tokens, uncached.tokens), kind
        assert cached.new_tokens == uncached.new_tokens and cached.finished[1]


def test_rotations_and_biases_are_computed_once_per_forward_pass(monkeypatch):
    for kind in ("rope", "alibi", "t5"):
        model = tiny(kind, n_layers=3)
        calls = {"rotation": 0, "bias": 0}
        for name in calls:
            original = getattr(model.positional, name)

            def counted(*args, _name=name, _original=original, _calls=calls):
                _calls[_name] += 1
                return _original(*args)

            monkeypatch.setattr(model.positional, name, counted)
        with torch.no_grad():
            model(torch.randint(0, 61, (2, 10)))
        assert calls == {"rotation": 1, "bias": 1}, kind
