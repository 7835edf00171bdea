"""Assembling models from configs: parameter counts, shapes, causality, the book's golden output."""

from __future__ import annotations

import pytest
import torch

from llmbricks.core.build import build_model, build_tokenizer, summarize_config
from llmbricks.core.config import load_config
from llmbricks.core.tasks.smoke import smoke_test

TINY = {"vocab_size": 50, "context_length": 16, "emb_dim": 32, "n_layers": 2, "n_heads": 4,
        "dropout": 0.0}


def test_gpt2_small_counts_match_the_book():
    s = summarize_config(load_config({"model": {"preset": "gpt2-small"}}))
    assert s.untied == 163_009_536
    assert s.tied == 124_412_160
    assert s.total == s.untied and not s.head_tied  # the book's GPTModel has its own head
    assert round(s.fp32_bytes / 2**20, 2) == 621.83  # "621.83 MB"
    tied = summarize_config(load_config({"model": {"preset": "gpt2-small", "head": {"tie_weights": True}}}))
    assert tied.total == 124_412_160 and tied.head_tied


@pytest.mark.parametrize("preset,untied,tied", [
    ("gpt2-medium", 406.2, 354.7),
    ("gpt2-large", 838.2, 773.9),
    ("gpt2-xl", 1637.8, 1557.4),
])
def test_larger_presets_match_the_book(preset, untied, tied):
    s = summarize_config(load_config({"model": {"preset": preset}}))
    assert round(s.untied / 1e6, 1) == untied
    assert round(s.tied / 1e6, 1) == tied


def test_summary_is_built_on_the_meta_device():
    model = build_model(load_config({"model": {"preset": "gpt2-xl"}}), device="meta")
    assert all(p.is_meta for p in model.parameters())


def test_per_block_counts_match_the_book():
    model = build_model(load_config({"model": {"preset": "gpt2-small"}}), device="meta")
    block = model.blocks[0]
    assert sum(p.numel() for p in block.ff.parameters()) == 4_722_432  # "4.72M"
    assert sum(p.numel() for p in block.attn.parameters()) == 2_360_064  # "2.36M"


def test_forward_gives_logits_batch_time_vocab():
    model = build_model(load_config({"model": TINY}))
    ids = torch.randint(0, 50, (3, 11))
    assert model(ids).shape == (3, 11, 50)
    assert model.hidden(ids).shape == (3, 11, 32)


def test_mha_model_is_causal():
    torch.manual_seed(0)
    model = build_model(load_config({"model": TINY})).eval()
    ids = torch.randint(0, 50, (2, 16))
    later = ids.clone()
    later[:, 9:] = torch.randint(0, 50, (2, 7))
    with torch.no_grad():
        a, b = model(ids), model(later)
    assert torch.equal(a[:, :9], b[:, :9])
    assert not torch.allclose(a[:, 9:], b[:, 9:])


def test_tied_head_shares_one_tensor():
    model = build_model(load_config({"model": {**TINY, "head": {"name": "lm", "tie_weights": True}}}))
    assert model.head.proj.weight is model.embedding.weight
    untied = build_model(load_config({"model": {**TINY, "head": {"name": "lm", "tie_weights": False}}}))
    assert untied.head.proj.weight is not untied.embedding.weight


def test_kv_cache_matches_full_forward_with_gqa():
    config = load_config({"model": {**TINY, "positional": "none",
                                    "attention": {"name": "mha", "n_kv_heads": 2}}})
    torch.manual_seed(0)
    model = build_model(config).eval()
    ids = torch.randint(0, 50, (2, 16))
    cache = model.new_cache(2, 16)
    assert len(cache.layers) == 2
    assert cache.layer(0).k.shape == (2, 2, 16, 8)  # [batch, kv heads, max_len, head_dim]
    with torch.no_grad():
        full = model(ids)
        parts = [model(ids[:, :7], cache=cache)] + [model(ids[:, t:t + 1], cache=cache) for t in range(7, 16)]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="KV cache is full"):
        model(ids[:, :1], cache=cache)


def test_build_model_takes_vocab_from_a_trained_tokenizer():
    config = load_config({"model": {**TINY, "vocab_size": "auto", "tokenizer": "char"}})
    tokenizer = build_tokenizer(config)
    tokenizer.train(["hello world"])
    model = build_model(config, tokenizer=tokenizer)
    assert model.dims.vocab_size == tokenizer.vocab_size == 8


def test_smoke_test_runs_forward_and_backward():
    result = smoke_test(load_config({"model": {"preset": "nanogpt-baby"}}))
    assert result.logits_shape == (2, 16, 256) and result.vocab_placeholder
    assert 4.0 < result.loss < 7.0  # ~ln(256) = 5.55 at init


def test_smoke_test_with_an_adapter_backpropagates_into_it():
    config = load_config({"model": {**TINY, "adapters": [{"name": "lora", "r": 2}]}})
    result = smoke_test(config)
    assert result.logits_shape == (2, 16, 50) and result.loss > 0
