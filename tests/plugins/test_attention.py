"""The fused ``sdpa`` attention equals the reference ``mha`` for every positional kind and GQA."""

from __future__ import annotations

import pytest
import torch

from llmbricks.core.build import build_model
from llmbricks.core.config import load_config
from llmbricks.core.registry import Registry

REGISTRY = Registry()
POSITIONAL = REGISTRY.names("positional")
SHAPE = {"vocab_size": 97, "context_length": 32, "emb_dim": 48, "n_layers": 2, "n_heads": 6,
         "dropout": 0.0}


def model_pair(positional: str, n_kv_heads: int | None):
    models = []
    for attention in ("mha", "sdpa"):
        config = load_config({"model": {**SHAPE, "positional": positional, "attention": {
            "name": attention, "n_kv_heads": n_kv_heads, "qkv_bias": True}}}, registry=REGISTRY)
        torch.manual_seed(0)
        models.append(build_model(config, REGISTRY).eval())
    models[1].load_state_dict(models[0].state_dict())  # same parameter names, same weights
    return models


@pytest.mark.parametrize("n_kv_heads", [None, 2, 1], ids=["mha", "gqa", "mqa"])
@pytest.mark.parametrize("positional", POSITIONAL)
def test_sdpa_equals_mha(positional, n_kv_heads):
    mha, sdpa = model_pair(positional, n_kv_heads)
    ids = torch.randint(0, 97, (3, 32))
    with torch.no_grad():
        torch.testing.assert_close(sdpa(ids), mha(ids), atol=1e-5, rtol=1e-5)
        # Prefill + one token at a time through the cache too (the masked, non-causal path).
        caches = [m.new_cache(3, 32) for m in (mha, sdpa)]
        for chunk in (ids[:, :20], ids[:, 20:23], ids[:, 23:24]):
            a, b = (m(chunk, cache=c) for m, c in zip((mha, sdpa), caches, strict=True))
            torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)


def test_every_attention_conforms_with_gqa():
    from llmbricks.testing import check_component

    for name in REGISTRY.names("attention"):
        assert "cache equivalence" in check_component("attention", name, REGISTRY, params={"n_kv_heads": 2})


def test_sdpa_dropout_only_in_training():
    config = load_config({"model": {**SHAPE, "dropout": 0.5, "attention": "sdpa"}}, registry=REGISTRY)
    model = build_model(config, REGISTRY)
    ids = torch.randint(0, 97, (2, 16))
    model.train()
    assert not torch.allclose(model(ids), model(ids))
    model.eval()
    torch.testing.assert_close(model(ids), model(ids))


# --- sliding window ------------------------------------------------------------------------------

WINDOW = 8


def windowed_pair(positional: str, n_kv_heads: int | None, window: int | None = WINDOW,
                  n_layers: int = 2):
    """``mha`` and ``sdpa`` models with the same weights and a sliding ``window``."""
    models = []
    for attention in ("mha", "sdpa"):
        config = load_config({"model": {**SHAPE, "n_layers": n_layers, "positional": positional,
                                        "attention": {"name": attention, "n_kv_heads": n_kv_heads,
                                                      "qkv_bias": True, "window": window}}},
                             registry=REGISTRY)
        torch.manual_seed(0)
        models.append(build_model(config, REGISTRY).eval())
    models[1].load_state_dict(models[0].state_dict())
    return models


@pytest.mark.parametrize("n_kv_heads", [None, 2], ids=["mha", "gqa"])
@pytest.mark.parametrize("positional", POSITIONAL)
def test_sdpa_equals_mha_with_a_window(positional, n_kv_heads):
    """Forward, backward (training mode) and the cached path past the window, bias kinds included."""
    mha, sdpa = windowed_pair(positional, n_kv_heads)
    ids = torch.randint(0, 97, (3, 32))
    targets = torch.randint(0, 97, (3, 32))
    grads = []
    for model in (mha, sdpa):
        model.train()  # dropout is 0: the training path, same numbers
        loss = torch.nn.functional.cross_entropy(model(ids).flatten(0, 1), targets.flatten())
        loss.backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
        model.eval()
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-5, rtol=1e-4, msg=name)
    with torch.no_grad():
        full = mha(ids)
        torch.testing.assert_close(sdpa(ids), full, atol=1e-5, rtol=1e-5)
        caches = [m.new_cache(3, 32) for m in (mha, sdpa)]
        # A prefill longer than the window, a chunk, then single tokens: each against the cache.
        for chunk in (ids[:, :13], ids[:, 13:18], ids[:, 18:19], ids[:, 19:20], ids[:, 20:32]):
            a, b = (m(chunk, cache=c) for m, c in zip((mha, sdpa), caches, strict=True))
            torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(a, full[:, 20:], atol=1e-5, rtol=1e-5)  # cached == uncached


@pytest.mark.parametrize("attention", ["mha", "sdpa"])
def test_window_hides_exactly_the_keys_older_than_it(attention):
    """One layer, rope: position p with window W equals a windowless model fed tokens p-W+1 .. p.

    Rotary scores depend only on q - k, so the shifted slice is the same attention; this checks
    "W keys, itself included" without the mask code under test.
    """
    windowed = windowed_pair("rope", 2, n_layers=1)[attention == "sdpa"]
    plain = windowed_pair("rope", 2, window=None, n_layers=1)[attention == "sdpa"]
    ids = torch.randint(0, 97, (2, 32))
    with torch.no_grad():
        out = windowed(ids)
        for p in (0, WINDOW - 1, WINDOW, 20, 31):
            alone = plain(ids[:, max(p - WINDOW + 1, 0):p + 1])[:, -1]
            torch.testing.assert_close(out[:, p], alone, atol=1e-5, rtol=1e-5)
        full = plain(ids)
    torch.testing.assert_close(out[:, :WINDOW], full[:, :WINDOW])  # the window covers them all
    assert not torch.allclose(out[:, WINDOW:], full[:, WINDOW:], atol=1e-3)


@pytest.mark.parametrize("attention", ["mha", "sdpa"])
def test_a_window_covering_every_key_is_full_causal_attention(attention):
    """W >= the keys seen: the same numbers as no window (sdpa keeps its fast paths: bit for bit)."""
    wide = windowed_pair("rope", 2, window=32)[attention == "sdpa"]
    wider = windowed_pair("rope", 2, window=10_000)[attention == "sdpa"]
    plain = windowed_pair("rope", 2, window=None)[attention == "sdpa"]
    ids = torch.randint(0, 97, (2, 32))
    with torch.no_grad():
        assert torch.equal(wide(ids), plain(ids)) and torch.equal(wider(ids), plain(ids))
        caches = [m.new_cache(2, 32) for m in (wide, plain)]
        for chunk in (ids[:, :20], ids[:, 20:21], ids[:, 21:32]):
            a, b = (m(chunk, cache=c) for m, c in zip((wide, plain), caches, strict=True))
            assert torch.equal(a, b)


def test_window_param_is_checked():
    from llmbricks.core.errors import ConfigError

    with pytest.raises(ConfigError, match="window"):
        load_config({"model": {**SHAPE, "attention": {"name": "sdpa", "window": 0}}}, registry=REGISTRY)
    config = load_config({"model": {**SHAPE, "attention": {"name": "mha", "window": 1000}}},
                         registry=REGISTRY)  # longer than the context: allowed (full attention)
    assert config.model.attention.params["window"] == 1000


@pytest.mark.parametrize("attention", ["mha", "sdpa"])
def test_cached_generation_equals_uncached_past_the_window(attention):
    from llmbricks.core.tasks.generation import generate_ids

    config = load_config({"model": {**SHAPE, "context_length": 64, "positional": "rope",
                                    "attention": {"name": attention, "n_kv_heads": 2,
                                                  "window": WINDOW}}}, registry=REGISTRY)
    torch.manual_seed(0)
    model = build_model(config, REGISTRY).eval()
    prompt = torch.randint(0, 97, (2, 5))
    runs = {use_cache: generate_ids(model, prompt, max_new_tokens=40, use_cache=use_cache).tokens
            for use_cache in (True, False)}
    assert runs[True].shape == (2, 45)
    assert runs[True].tolist() == runs[False].tolist()
    # Prompt lookup verifies several tokens per pass: the masked multi-token path through the cache.
    looked = generate_ids(model, prompt[:1], max_new_tokens=40, prompt_lookup=4, lookup_ngram=1)
    assert looked.tokens.tolist() == runs[False][:1].tolist()


MISTRAL = {"vocab_size": 101, "hidden_size": 64, "intermediate_size": 88, "num_hidden_layers": 2,
           "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 128,
           "sliding_window": WINDOW}


@pytest.fixture(scope="module")
def mistral_pair():
    """A random transformers Mistral with a sliding window of 8, and llmbricks holding its weights."""
    transformers = pytest.importorskip("transformers")
    from llmbricks.plugins.weights.llama_hf import hf_name

    torch.manual_seed(0)
    hf_config = transformers.MistralConfig(**MISTRAL, attn_implementation="eager")
    hf_model = transformers.MistralForCausalLM(hf_config).eval()
    with torch.no_grad():  # norms start at 1: move them so a mix-up shows
        for name, tensor in hf_model.named_parameters():
            if name.endswith("norm.weight"):
                tensor.add_(torch.randn_like(tensor) * 0.1)
    config = load_config({"model": {
        "vocab_size": 101, "context_length": 128, "emb_dim": 64, "n_layers": 2, "n_heads": 4,
        "dropout": 0.0, "tokenizer": None, "embedding": "token",
        "positional": {"name": "rope", "theta": 10000.0},
        "attention": {"name": "sdpa", "n_kv_heads": 2, "qkv_bias": False, "out_bias": False,
                      "window": WINDOW},
        "norm": {"name": "rmsnorm", "eps": 1e-6}, "feedforward": {"name": "swiglu", "hidden": 88},
        "block": "gpt", "head": {"name": "lm", "tie_weights": False}}}, registry=REGISTRY)
    model = build_model(config, REGISTRY).eval()
    theirs = hf_model.state_dict()
    model.load_state_dict({n: theirs[hf_name(n)] for n in model.state_dict()})
    return hf_model, model


def mistral_ids() -> torch.Tensor:
    return torch.randint(1, 101, (2, 40), generator=torch.Generator().manual_seed(3))


@torch.no_grad()
def test_window_logits_equal_transformers_mistral(mistral_pair):
    hf_model, model = mistral_pair
    ids = mistral_ids()  # 40 tokens: 5 windows
    theirs = hf_model(ids).logits
    assert (model(ids) - theirs).abs().max().item() <= 1e-4
    # The window matters here: without it the logits past position 8 would differ.
    hf_model.config.sliding_window = None
    try:
        unwindowed = hf_model(ids).logits
    finally:
        hf_model.config.sliding_window = WINDOW
    assert (unwindowed[:, WINDOW:] - theirs[:, WINDOW:]).abs().max().item() > 1e-3


@torch.no_grad()
def test_window_greedy_tokens_through_the_cache_equal_transformers_mistral(mistral_pair):
    from llmbricks.core.tasks.generation import generate_ids

    hf_model, model = mistral_pair
    prompt = mistral_ids()[:1, :12]  # 12 + 20 tokens: the cache runs well past the window
    theirs = hf_model.generate(prompt, max_new_tokens=20, min_new_tokens=20, do_sample=False,
                               pad_token_id=0)[:, 12:]
    ours = generate_ids(model, prompt, max_new_tokens=20, use_cache=True).tokens[:, 12:]
    assert ours.tolist() == theirs.tolist()


@pytest.mark.parametrize("qk_norm", ["head", "full"])
def test_qk_norm_offset_stores_w_and_applies_one_plus_w(qk_norm):
    """Gemma 3's norms store w and scale by 1 + w: the same function as offset 0 storing 1 + w."""
    from llmbricks.core.component import Dims
    from llmbricks.core.interfaces import PositionContext
    from llmbricks.plugins.attention.base import AttentionParams
    from llmbricks.plugins.attention.sdpa import SDPAttention

    dims = Dims(vocab_size=10, context_length=16, emb_dim=32, n_heads=4, n_kv_heads=2, n_layers=1,
                dropout=0.0)
    plain = SDPAttention(AttentionParams(qk_norm=qk_norm, n_kv_heads=2), dims)
    offset = SDPAttention(AttentionParams(qk_norm=qk_norm, n_kv_heads=2, qk_norm_offset=1.0), dims)
    assert torch.equal(offset.q_norm.weight, torch.zeros_like(offset.q_norm.weight))
    state = plain.state_dict()
    with torch.no_grad():
        for name in ("q_norm.weight", "k_norm.weight"):
            state[name] = torch.randn_like(state[name])
    plain.load_state_dict(state)
    offset.load_state_dict({n: t - 1 if n.endswith("norm.weight") else t for n, t in state.items()})
    x = torch.randn(2, 9, 32)
    pos = PositionContext(torch.arange(9), torch.arange(9))
    torch.testing.assert_close(offset(x, pos), plain(x, pos), rtol=1e-5, atol=1e-6)
    assert tuple(plain.q_norm.weight.shape) == ((8,) if qk_norm == "head" else (32,))


@pytest.mark.parametrize("attention", ["mha", "sdpa"])
def test_windowed_attention_conforms(attention):
    from llmbricks.testing import check_component

    passed = check_component("attention", attention, REGISTRY, params={"window": 3, "n_kv_heads": 2})
    assert {"causal", "cache equivalence"} <= set(passed)
