"""The classify trainer's pieces: its params, and each freeze policy over one real step."""

from __future__ import annotations

import pytest
import torch

from llmbricks.core.build import adapter_state_names, build_model
from llmbricks.core.config import load_config
from llmbricks.core.errors import ConfigError
from llmbricks.core.train.optim import adamw
from llmbricks.core.train.trainable import apply_trainable
from llmbricks.plugins.trainers.classify import class_loss, train_head

MODEL = {"vocab_size": 30, "context_length": 8, "emb_dim": 16, "n_layers": 3, "n_heads": 2,
         "dropout": 0.0, "head": {"name": "classification", "pooling": "last_nonpad"}}


def one_step(policy: str, **model) -> tuple[set[str], set[str], set[str]]:
    """Apply ``policy`` as the trainer does, take one AdamW step; return (trained, changed, graded)."""
    config = load_config({"model": {**MODEL, **model}, "train": {"trainer": "classify",
                                                                 "trainable": policy}})
    torch.manual_seed(0)
    net = build_model(config)
    train_head(net, apply_trainable(net, policy, "last_block"), policy)
    before = {k: v.detach().clone() for k, v in net.state_dict().items()}
    optimizer = adamw(net, lr=0.1, weight_decay=0.0, betas=(0.9, 0.999),
                      decay_embeddings=False, device=torch.device("cpu"))
    batch = (torch.randint(0, 30, (4, 8)), torch.tensor([8, 5, 3, 1]), torch.tensor([0, 1, 0, 1]))
    class_loss(net, batch).backward()
    graded = {n for n, p in net.named_parameters() if p.grad is not None}
    optimizer.step()
    trained = {n for n, p in net.named_parameters() if p.requires_grad}
    changed = {k for k, v in net.state_dict().items() if not torch.equal(v, before[k])}
    return trained, changed, graded


def check(trained: set[str], changed: set[str], graded: set[str]) -> None:
    assert graded == trained  # frozen parameters get no gradient
    assert changed == trained  # ... stay bit-identical, and every trained one moved


def test_last_block_is_the_default_and_trains_the_last_block_final_norm_and_head():
    trained, changed, graded = one_step("auto")
    check(trained, changed, graded)
    assert trained and all(n.startswith(("blocks.2.", "norm.", "head.")) for n in trained)
    assert {"head.proj.weight", "head.proj.bias"} <= trained
    assert any(n.startswith("blocks.2.") for n in trained)


def test_head_trains_only_the_head():
    trained, changed, graded = one_step("head")
    check(trained, changed, graded)
    assert trained == {"head.proj.weight", "head.proj.bias"}


def test_all_trains_everything():
    trained, changed, graded = one_step("all")
    check(trained, changed, graded)
    assert trained == {n for n, _ in build_model(load_config({"model": MODEL})).named_parameters()}


def test_lora_trains_the_adapter_and_the_fresh_head_the_base_stays_frozen():
    lora = [{"name": "lora", "r": 2, "alpha": 4}]
    trained, changed, graded = one_step("auto", adapters=lora)
    assert graded == trained and changed <= trained  # the base is bit-identical
    # B starts at zero, so A's first gradient is zero: A moves from the second step on.
    assert all(n.endswith("lora_A") for n in trained - changed)
    lora_names = {n for n in trained if n.endswith(("lora_A", "lora_B"))}
    assert lora_names and trained == lora_names | {"head.proj.weight", "head.proj.bias"}


def test_lora_on_the_head_leaves_the_head_weights_to_the_adapter():
    lora = [{"name": "lora", "r": 2, "alpha": 4, "targets": ["*"]}]
    config = load_config({"model": {**MODEL, "adapters": lora}})
    net = build_model(config)
    train_head(net, apply_trainable(net, "auto", "last_block"), "auto")
    trained = {n for n, p in net.named_parameters() if p.requires_grad}
    assert trained == adapter_state_names(net) and "head.proj.lora_A" in trained


def test_none_without_adapters_is_refused():
    with pytest.raises(ConfigError, match="none leaves nothing to train"):
        one_step("none")


def test_fixed_padding_needs_max_length():
    with pytest.raises(ConfigError, match="padding 'fixed' needs max_length"):
        load_config({"train": {"trainer": {"name": "classify", "padding": "fixed"}}})


@pytest.mark.parametrize("split", [[0.8, 0.2, 0.1], [0.0, 0.5, 0.5], [0.7, -0.1, 0.4]])
def test_a_bad_split_is_refused(split):
    with pytest.raises(ConfigError, match="split"):
        load_config({"train": {"trainer": {"name": "classify", "split": split}}})
