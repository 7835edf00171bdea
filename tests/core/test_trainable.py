"""``train.trainable``: which base weights train under each freeze policy; adapters always train."""

from __future__ import annotations

import pytest

from llmbricks.core.build import adapter_state_names, build_model
from llmbricks.core.config import load_config
from llmbricks.core.errors import ConfigError
from llmbricks.core.train.trainable import apply_trainable

TINY = {"vocab_size": 50, "context_length": 8, "emb_dim": 16, "n_layers": 3, "n_heads": 2,
        "head": {"name": "lm", "tie_weights": False}}


def model_with(**model):
    return build_model(load_config({"model": {**TINY, **model}}))


def trained_names(model) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


def test_all_trains_everything():
    model = model_with()
    assert apply_trainable(model, "all") == "all"
    assert trained_names(model) == {name for name, _ in model.named_parameters()}


def test_last_block_trains_the_last_block_the_final_norm_and_the_head():
    model = model_with()
    apply_trainable(model, "last_block")
    names = trained_names(model)
    assert names and all(n.startswith(("blocks.2.", "norm.", "head.")) for n in names)
    assert any(n.startswith("blocks.2.") for n in names) and "head.proj.weight" in names
    assert not any(n.startswith(("blocks.0.", "blocks.1.", "embedding.")) for n in names)


def test_head_trains_only_the_head():
    model = model_with()
    apply_trainable(model, "head")
    assert trained_names(model) == {"head.proj.weight"}


def test_auto_takes_the_trainer_default_without_adapters_and_adapters_only_with_them():
    plain = model_with()
    assert apply_trainable(plain, "auto", "last_block") == "last_block"
    adapted = model_with(adapters=[{"name": "lora", "r": 2}])
    assert apply_trainable(adapted, "auto", "last_block") == "none"
    assert trained_names(adapted) == adapter_state_names(adapted)
    assert all(n.endswith(("lora_A", "lora_B")) for n in trained_names(adapted))


def test_a_policy_with_adapters_trains_those_base_weights_plus_the_adapters():
    adapted = model_with(adapters=[{"name": "lora", "r": 2}])
    apply_trainable(adapted, "head")
    assert trained_names(adapted) == adapter_state_names(adapted) | {"head.proj.weight"}


def test_none_without_adapters_is_a_config_error():
    with pytest.raises(ConfigError, match="none leaves nothing to train"):
        apply_trainable(model_with(), "none")


def test_adapters_from_the_config_are_applied_in_build_model():
    model = model_with(adapters=[{"name": "lora", "r": 4, "targets": ["*.attn.q_proj"]}])
    assert [a.name for a in model.adapters] == ["lora"]
    assert adapter_state_names(model) == {f"blocks.{i}.attn.q_proj.lora_{m}"
                                          for i in range(3) for m in "AB"}
