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
