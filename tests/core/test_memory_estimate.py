"""The training-memory estimate: meta-device counts, its formula, the machine's memory, the refusal."""

from __future__ import annotations

import pytest
import torch

from llmbricks.core.build import build_model
from llmbricks.core.config import load_config
from llmbricks.core.errors import ConfigError
from llmbricks.core.interfaces import PositionContext
from llmbricks.core.train import memory
from llmbricks.core.train.memory import (
    PARTS,
    SKIP_ENV,
    MemoryEstimate,
    block_activation_bytes,
    check_memory,
    estimate_memory,
)

MIB = 1 << 20


def config(**sections: dict) -> object:
    """A small GPT (2 layers, 64 dims, context 32, vocab 100) with the given sections merged in."""
    model = {"vocab_size": 100, "context_length": 32, "emb_dim": 64, "n_layers": 2, "n_heads": 4,
             "dropout": 0.0, **sections.get("model", {})}
    train = {"batch_size": 4, **sections.get("train", {})}
    return load_config({"model": model, "train": train, **sections.get("rest", {})})


def test_the_model_is_counted_on_the_meta_device(monkeypatch):
    built = []

    def spy(*args, **kwargs):
        model = build_model(*args, **kwargs)
        built.append(model)
        return model

    monkeypatch.setattr(memory, "build_model", spy)
    big = load_config({"model": {"preset": "gpt2-xl"}})  # 1.6B parameters: 6 GiB if allocated
    estimate = estimate_memory(big, process_bytes=0)
    assert built and all(p.is_meta for p in built[0].parameters())
    assert all(b.is_meta for b in built[0].buffers())
    assert estimate.weights > 6 * 1024 * MIB  # the counts are real all the same


def test_the_parts_add_up_and_name_themselves():
    estimate = estimate_memory(config(), process_bytes=100 * MIB)
    assert tuple(estimate.parts()) == PARTS
    assert estimate.total == sum(estimate.parts().values())
    assert estimate.process == 100 * MIB
    assert estimate.breakdown().startswith("process 0.10, weights ")
    assert estimate.to_data()["total_bytes"] == estimate.total


def test_adamw_keeps_two_moments_and_one_gradient_per_trainable_weight():
    estimate = estimate_memory(config(), process_bytes=0)
    params = sum(p.numel() for p in build_model(config(), device="meta").parameters()) * 4
    assert estimate.weights >= params
    assert estimate.gradients == params
    assert estimate.optimizer == 2 * params


def test_frozen_weights_need_no_gradient_no_moments_and_keep_fewer_activations():
    untied = {"n_layers": 4, "head": {"name": "lm", "tie_weights": False}}
    everything = estimate_memory(config(model=untied), process_bytes=0)
    head_only = estimate_memory(config(model=untied, train={"trainable": "head"}), process_bytes=0)
    assert head_only.weights == everything.weights
    assert head_only.gradients < everything.gradients / 2
    assert head_only.optimizer == 2 * head_only.gradients
    assert head_only.activations < everything.activations  # no gradient flows into the blocks
    last = estimate_memory(config(model=untied, train={"trainable": "last_block"}), process_bytes=0)
    assert head_only.activations < last.activations < everything.activations


@pytest.mark.parametrize("field,values", [("batch_size", (1, 2, 8, 32)),
                                          ("context_length", (8, 16, 32, 64))])
def test_the_estimate_grows_with_the_batch_and_the_context(field, values):
    section = "train" if field == "batch_size" else "model"
    totals = [estimate_memory(config(**{section: {field: v}}), process_bytes=0).activations
              for v in values]
    assert totals == sorted(totals) and len(set(totals)) == len(totals)


def test_reference_attention_keeps_the_attention_weights_and_fused_does_not():
    fused = estimate_memory(config(model={"attention": "sdpa"}), process_bytes=0)
    reference = estimate_memory(config(model={"attention": "mha"}), process_bytes=0)
    # mha keeps the softmax weights: 2 layers x batch 4 x 4 heads x 32 x 32 tokens, fp32
    assert reference.activations - fused.activations == 2 * 4 * 4 * 32 * 32 * 4


def test_the_block_formula_matches_what_autograd_saves():
    """The formula against the bytes of the tensors autograd really keeps, for one block."""
    for attention, dropout in (("sdpa", 0.0), ("mha", 0.0), ("mha", 0.1)):
        cfg = config(model={"attention": attention, "dropout": dropout, "emb_dim": 64,
                            "n_heads": 4, "context_length": 32})
        model = build_model(cfg)
        model.train()
        block = model.layout().blocks[0]
        x = torch.randn(4, 32, 64, requires_grad=True)
        positions = PositionContext(q=torch.arange(32), k=torch.arange(32))  # absolute: nothing
        saved = _saved_bytes(block, x, positions)
        expected = block_activation_bytes(block, 4, 32, 64, 4, dropout, 4,
                                          fused=attention == "sdpa" and dropout == 0)
        expected -= 4 * 32 * 64 * 4  # the block's input is the previous layer's (x, excluded)
        assert 0.8 < saved / expected < 1.2, (attention, dropout, saved, expected)


def _saved_bytes(block, x, positions) -> int:
    """Bytes of distinct storages autograd saves in ``block(x)``, less the input and weights."""
    skip = {t.untyped_storage().data_ptr() for t in [x, *block.parameters()]}
    storages: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in skip:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        block(x, positions)
    return sum(storages.values())


def test_bf16_halves_the_activations_roughly():
    fp32 = estimate_memory(config(), process_bytes=0).activations
    bf16 = estimate_memory(config(train={"precision": "bf16"}), process_bytes=0).activations
    assert bf16 < fp32


def test_the_token_cache_of_a_text_source_is_at_most_a_token_per_byte(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(b"a" * 10_000)
    cfg = config(rest={"data": {"source": {"name": "text", "path": str(corpus)}}})
    assert estimate_memory(cfg, process_bytes=0).token_cache == 10_000 * 2  # uint16 ids
    named = estimate_memory(config(), process_bytes=0)  # python_docs: size unknown up front
    assert named.token_cache == 0 and any("token cache" in n for n in named.notes)


def test_a_vocabulary_learned_from_data_is_assumed_and_said():
    cfg = load_config({"model": {"tokenizer": "char", "context_length": 16, "emb_dim": 32,
                                 "n_layers": 1, "n_heads": 2}})
    estimate = estimate_memory(cfg, process_bytes=0)
    assert any("assumed" in note for note in estimate.notes)
    exact = estimate_memory(cfg, process_bytes=0, vocab_size=40)
    assert exact.weights < estimate.weights and not any("assumed" in n for n in exact.notes)


def test_available_memory_takes_the_smaller_of_meminfo_and_the_cgroup(monkeypatch):
    monkeypatch.setattr(memory, "current_rss", lambda: 1 * MIB)
    monkeypatch.setattr(memory, "_proc_field", lambda path, name: 8000 * MIB)
    monkeypatch.setattr(memory, "_cgroup_room", lambda: 500 * MIB)
    assert memory.available_memory("cpu") == 501 * MIB
    monkeypatch.setattr(memory, "_cgroup_room", lambda: None)
    assert memory.available_memory("cpu") == 8001 * MIB
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # four ranks on this machine share it
    assert memory.available_memory("cpu") == 2001 * MIB
    monkeypatch.setattr(memory, "_proc_field", lambda path, name: None)
    assert memory.available_memory("cpu") is None  # no /proc: no check


def test_the_real_machine_has_some_memory_available():
    available = memory.available_memory("cpu")
    assert available is None or available > memory.current_rss() > 0


def test_a_config_that_cannot_fit_is_refused_in_one_line(monkeypatch):
    monkeypatch.delenv(SKIP_ENV, raising=False)
    monkeypatch.setattr(memory, "available_memory", lambda device: 50 * MIB)
    monkeypatch.setattr(memory, "current_rss", lambda: 40 * MIB)
    monkeypatch.setattr(memory, "TRAINING_RUNTIME", 0)
    cfg = config(train={"batch_size": 512})
    with pytest.raises(ConfigError) as caught:
        check_memory(cfg, "cpu")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("this config needs about ") and "GiB to train (process 0.04" in message
    assert "but the machine has 0.05 GiB available" in message
    assert "train.batch_size" in message and f"{SKIP_ENV}=1" in message


def test_a_config_that_fits_passes_and_the_escape_hatch_skips_the_check(monkeypatch):
    monkeypatch.delenv(SKIP_ENV, raising=False)
    monkeypatch.setattr(memory, "available_memory", lambda device: 1 << 40)
    assert isinstance(check_memory(config(), "cpu"), MemoryEstimate)
    monkeypatch.setattr(memory, "available_memory", lambda device: 1)
    monkeypatch.setenv(SKIP_ENV, "1")
    assert check_memory(config(), "cpu") is None
    monkeypatch.setenv(SKIP_ENV, "0")  # 0 means the check is on
    with pytest.raises(ConfigError):
        check_memory(config(), "cpu")


def test_on_a_gpu_the_process_is_not_in_the_estimate():
    estimate = estimate_memory(config(), device="cuda")  # counted on meta: no GPU needed
    assert estimate.process == 0 and estimate.device == "cuda"
    # fused attention keeps no attention weights on a GPU, dropout or not
    with_dropout = estimate_memory(config(model={"dropout": 0.1}), device="cuda")
    on_cpu = estimate_memory(config(model={"dropout": 0.1}), device="cpu", process_bytes=0)
    assert with_dropout.activations < on_cpu.activations
