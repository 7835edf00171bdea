"""Every built-in component passes the same conformance kit a third-party one must pass."""

from __future__ import annotations

import pytest

from llmbricks.core.registry import Registry
from llmbricks.testing import ConformanceError, check_component

REGISTRY = Registry()
BUILTINS = [(kind, name) for kind in REGISTRY.kinds() for name in REGISTRY.names(kind)]


def test_every_kind_of_this_issue_has_a_builtin():
    kinds = {kind for kind, _ in BUILTINS}
    assert {"tokenizer", "embedding", "positional", "attention", "norm", "feedforward", "block",
            "model", "head"} <= kinds


@pytest.mark.parametrize("kind,name", BUILTINS, ids=[f"{k}-{n}" for k, n in BUILTINS])
def test_builtin_conforms(kind, name):
    passed = check_component(kind, name, REGISTRY)
    assert "summary" in passed
    if kind != "tokenizer":
        assert {"causal", "cache equivalence", "state_dict round trip", "seeded determinism"} <= set(passed)
    else:
        assert {"round trip", "save/load"} <= set(passed)


def test_gqa_attention_conforms():
    assert "cache equivalence" in check_component("attention", "mha", REGISTRY, params={"n_kv_heads": 1})


def test_the_kit_catches_a_future_leak(registry_with):
    import types

    import torch

    import llmbricks
    from llmbricks.core.interfaces import Attention

    class Leaky(Attention):
        """Attention that looks at the mean of all positions, future included."""

        name = "leaky"

        def __init__(self, params, dims):
            super().__init__(params, dims)
            self.proj = torch.nn.Linear(dims.emb_dim, dims.emb_dim)

        def forward(self, x, positional, positions, cache=None):
            return self.proj(x.mean(dim=1, keepdim=True).expand_as(x))

    @llmbricks.hookimpl
    def llmbricks_components():
        return [Leaky]

    reg = registry_with({"leaky": types.SimpleNamespace(llmbricks_components=llmbricks_components)})
    with pytest.raises(ConformanceError, match="attention 'leaky' fails 'causal'"):
        check_component("attention", "leaky", reg)
