"""A model plugin whose internals use other names works with everything core does to a model.

Freezing, LoRA, tying, parameter counts, init scaling, classification and generation all go
through declared contracts (``layout()``, ``residual_projections()``, ``output_weight()``); this
model shares none of the GPT assembly's attribute names, so any name matching left in core would
fail here.
"""

from __future__ import annotations

import pytest
import torch

from llmbricks.core.build import adapter_state_names, build_model, summarize
from llmbricks.core.config import load_config
from llmbricks.core.errors import ConfigError
from llmbricks.core.tasks.generation import generate_ids
from llmbricks.core.train.trainable import apply_trainable
from llmbricks.testing import check_component
from tests.plugins import renamed

TWISTED = {"arch": "twisted", "block": "twisted", "attention": "twisted",
           "feedforward": "twisted", "head": "twisted", "vocab_size": 40, "context_length": 12,
           "emb_dim": 16, "n_layers": 3, "n_heads": 2, "dropout": 0.0}


@pytest.fixture
def registry(registry_with):
    return registry_with({"twisted": renamed})


def twisted(registry, **model):
    torch.manual_seed(0)
    return build_model(load_config({"model": {**TWISTED, **model}}, registry=registry), registry)


def trained(model) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("kind", ["model", "block", "attention", "feedforward", "head"])
def test_each_part_passes_the_conformance_kit(registry, kind):
    assert "summary" in check_component(kind, "twisted", registry)


def test_freeze_policies_find_the_last_block_final_norm_and_head_by_role(registry):
    model = twisted(registry)
    apply_trainable(model, "last_block")
    names = trained(model)
    assert any(n.startswith("layers.2.") for n in names) and any(n.startswith("ln_f.") for n in names)
    assert not any(n.startswith(("layers.0.", "layers.1.")) for n in names)
    apply_trainable(model, "head")
    assert trained(model) == {"wte.table.weight"}  # the head is tied: its weight is the table


def test_lora_default_targets_are_the_blocks_linear_layers(registry):
    model = twisted(registry, adapters=[{"name": "lora", "r": 2}])
    wrapped = {n.rsplit(".", 1)[0] for n in adapter_state_names(model)}
    assert wrapped == {f"layers.{i}.{part}" for i in range(3)
                       for part in ("mix.wq", "mix.wk", "mix.wv", "mix.wo", "mlp.fc_in", "mlp.fc_out")}
    assert trained(model) == adapter_state_names(model)


def test_lora_role_targets_reach_the_head(registry):
    model = twisted(registry, head={"name": "classification", "num_classes": 2},
                    adapters=[{"name": "lora", "r": 2, "targets": ["@head"]}])
    assert {n.rsplit(".", 1)[0] for n in adapter_state_names(model)} == {"lm_out.proj"}


def test_tying_and_counts_come_from_the_declared_output_weight(registry):
    model = twisted(registry)
    assert model.lm_out.out.weight is model.wte.weight
    summary = summarize(model)
    assert summary.head_tied and summary.untied == summary.total + 40 * 16


def test_residual_projections_are_what_the_model_scaled(registry):
    model = twisted(registry)
    assert model.layers[0].mix.wo.weight.std() < 0.005 < model.layers[0].mix.wq.weight.std()


def test_generation_cached_equals_uncached(registry):
    model = twisted(registry).eval()
    prompt = torch.tensor([[1, 2, 3]])
    cached = generate_ids(model, prompt, max_new_tokens=6, use_cache=True).tokens
    uncached = generate_ids(model, prompt, max_new_tokens=6, use_cache=False).tokens
    assert torch.equal(cached, uncached) and cached.shape == (1, 9)


def test_a_sequence_head_classifies_and_refuses_to_generate(registry):
    model = twisted(registry, head={"name": "classification", "num_classes": 3,
                                    "pooling": "last_nonpad"})
    out = model(torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0]]), lengths=torch.tensor([3, 2]))
    assert out.shape == (2, 3) and model.layout().head.num_classes == 3
    with pytest.raises(ConfigError, match="cannot generate"):
        generate_ids(model, torch.tensor([[1, 2]]), max_new_tokens=1)


def test_it_trains_saves_and_reloads(registry, tmp_path):
    from llmbricks.core.store.runs import load_run
    from llmbricks.core.train.session import train

    (tmp_path / "corpus.txt").write_text("the quick brown fox jumps over the lazy dog " * 40)
    config = load_config({
        "name": "twisted", "model": {**TWISTED, "vocab_size": "auto", "tokenizer": "char"},
        "data": {"source": {"name": "text", "path": str(tmp_path / "corpus.txt")}},
        "train": {"max_steps": 30, "batch_size": 4, "lr": 3e-3, "eval_every": 10,
                  "eval_batches": 2, "loggers": [], "trainable": "last_block"}}, registry=registry)
    result = train(config, out=tmp_path / "run", registry=registry)
    assert result.status == "completed" and result.step == 30
    _, model, tokenizer = load_run(tmp_path / "run", registry=registry)
    assert isinstance(model, renamed.TwistedModel)
    text = tokenizer.decode(generate_ids(model, [tokenizer.encode("the ")], max_new_tokens=8).tokens[0].tolist())
    assert text.startswith("the ") and len(text) == 12
