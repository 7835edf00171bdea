"""Every built-in component passes the same conformance kit a third-party one must pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmbricks.core.registry import Registry
from llmbricks.testing import ConformanceError, check_component

REGISTRY = Registry()
BUILTINS = [(kind, name) for kind in REGISTRY.kinds() for name in REGISTRY.names(kind)]
# The builtins that read a file from $LLMBRICKS_DATA_DIR by default (skipped without it).
DATA_FILES = {
    ("tokenizer", "tiktoken"): ("gpt2.tiktoken",),
    ("datasource", "instruction_data"): ("instruction-data.json",),
    ("datasource", "sms_spam"): ("SMSSpamCollection",),
    ("datasource", "the_verdict"): ("the-verdict.txt",),
    ("datasource", "tinyshakespeare"): ("tinyshakespeare.txt",),
}
BUILTIN_PARAMS = [
    pytest.param(kind, name, id=f"{kind}-{name}",
                 marks=pytest.mark.data_files(*DATA_FILES.get((kind, name), ())))
    for kind, name in BUILTINS
]


def test_every_kind_of_this_issue_has_a_builtin():
    kinds = {kind for kind, _ in BUILTINS}
    assert {"tokenizer", "embedding", "positional", "attention", "norm", "feedforward", "block",
            "model", "head"} <= kinds


def params_for(kind: str, name: str, tmp: Path) -> dict:
    """Sources whose defaults name no file get a small one."""
    if (kind, name) == ("datasource", "text"):
        (tmp / "a.txt").write_text("some text\nmore text\n")
        return {"path": str(tmp / "a.txt")}
    if (kind, name) == ("datasource", "labeled_text"):
        (tmp / "rows.csv").write_text("text,label\nhello,greeting\nbye,farewell\n")
        return {"path": str(tmp / "rows.csv")}
    if (kind, name) == ("datasource", "instruction_json"):
        (tmp / "data.json").write_text('[{"instruction": "Add.", "input": "1 1", "output": "2"}]')
        return {"path": str(tmp / "data.json")}
    if (kind, name) == ("tokenizer", "hf"):  # a Hugging Face tokenizer.json built in the test
        from tests.plugins.test_hf_tokenizer import make_hf_folder
        return {"path": str(make_hf_folder(tmp / "hf"))}
    return {}


@pytest.mark.parametrize("kind,name", BUILTIN_PARAMS)
def test_builtin_conforms(kind, name, tmp_path):
    passed = set(check_component(kind, name, REGISTRY, params=params_for(kind, name, tmp_path)))
    assert "summary" in passed
    if kind == "tokenizer":
        assert {"round trip", "save/load"} <= passed
    elif kind == "datasource":
        assert {"yields data", "record type", "repeatable"} <= passed
    elif kind == "optimizer":
        assert {"trains", "state_dict round trip"} <= passed
    elif kind == "schedule":
        assert {"warmup", "range", "pure"} <= passed
    elif kind in ("logger", "trainer", "adapter", "prompt"):  # behaviour: their own tests
        assert {"summary", "defaults", "strict params"} <= passed
    elif kind == "head" and not REGISTRY.get(kind, name).per_token:  # one output per sequence
        assert {"sequence shape", "lengths", "state_dict round trip", "seeded determinism"} <= passed
    else:
        assert {"causal", "cache equivalence", "state_dict round trip", "seeded determinism"} <= passed


@pytest.mark.parametrize("pooling", ["last_nonpad", "mean"])
def test_a_pooling_head_that_skips_padding_is_checked_for_it(pooling):
    passed = check_component("head", "classification", REGISTRY,
                             params={"pooling": pooling, "num_classes": 3})
    assert "padding ignored" in passed


def test_the_books_last_pooling_reads_padding_so_that_check_is_skipped():
    assert "padding ignored" not in check_component("head", "classification", REGISTRY)


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

        def forward(self, x, positional, pos, cache=None):
            return self.proj(x.mean(dim=1, keepdim=True).expand_as(x))

    @llmbricks.hookimpl
    def llmbricks_components():
        return [Leaky]

    reg = registry_with({"leaky": types.SimpleNamespace(llmbricks_components=llmbricks_components)})
    with pytest.raises(ConformanceError, match="attention 'leaky' fails 'causal'"):
        check_component("attention", "leaky", reg)


@pytest.mark.parametrize("kind, name, params", [
    ("attention", "sdpa", {"qk_norm": "head"}),                  # QK-norm per head
    ("attention", "mha", {"qk_norm": "full"}),                   # QK-norm over the projection
    ("attention", "sdpa", {"window": 4, "n_kv_heads": 2}),       # sliding window
    ("attention", "sdpa", {"softcap": 20.0}),                    # score soft-capping
    ("feedforward", "relu2", {}),                                # ReLU^2
    ("head", "lm", {"softcap": 15.0, "tie_weights": False}),     # logit soft-capping
    ("model", "gpt", {"zero_residual": True}),                   # zero-initialised projections
], ids=["qk-norm-head", "qk-norm-full", "window", "score-softcap", "relu2", "logit-softcap",
        "zero-residual"])
def test_the_speedrun_ingredients_conform(kind, name, params):
    """Each modern ingredient, as the params that turn it on, passes the kit (cache included)."""
    passed = set(check_component(kind, name, REGISTRY, params=params))
    assert "summary" in passed
    if kind in ("attention", "model"):
        assert {"causal", "cache equivalence"} <= passed
