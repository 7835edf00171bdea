"""GPT-2 weight interop and model directories: parity with transformers, round trips, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import GPT2Config, GPT2LMHeadModel

from llmbricks.core.build import build_model, build_tokenizer
from llmbricks.core.config import load_config
from llmbricks.core.errors import CheckpointError, ComponentError, ConfigError
from llmbricks.core.store.model_dir import load_model_dir, save_model_dir
from llmbricks.core.tasks.generation import generate_ids
from llmbricks.plugins.weights.gpt2_hf import (
    check_exportable,
    config_from_hf,
    export_hf,
    import_gpt2,
    read_hf_checkpoint,
    to_hf_state_dict,
)

SHAPE = {"n_layer": 2, "n_embd": 64, "n_head": 4, "n_positions": 128}
TINY = {"vocab_size": 97, "context_length": 32, "emb_dim": 32, "n_layers": 2, "n_heads": 4,
        "dropout": 0.0}


def save_hf(directory: Path, seed: int = 0, **config) -> GPT2LMHeadModel:
    """A random GPT2LMHeadModel saved as safetensors (what `save_pretrained` writes)."""
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config(**{**SHAPE, "vocab_size": 50257, **config})).eval()
    model.save_pretrained(directory, safe_serialization=True)
    return model


@pytest.fixture(scope="module")
def hf(tmp_path_factory) -> tuple[Path, GPT2LMHeadModel]:
    directory = tmp_path_factory.mktemp("hf") / "gpt2"
    return directory, save_hf(directory)


@pytest.fixture(scope="module")
def imported(hf, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("imported") / "model"
    import_gpt2(hf[0], out)
    return out


def ids_batch(vocab: int, seed: int = 1, shape: tuple[int, int] = (2, 40)) -> torch.Tensor:
    return torch.randint(0, vocab, shape, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def hf_logits(model: GPT2LMHeadModel, ids: torch.Tensor) -> torch.Tensor:
    return model(ids).logits


@torch.no_grad()
def greedy(model, ids: torch.Tensor, steps: int) -> torch.Tensor:
    """The plainest greedy loop: the whole sequence through the model, argmax, append."""
    for _ in range(steps):
        ids = torch.cat([ids, model(ids)[:, -1].argmax(-1, keepdim=True)], dim=1)
    return ids


def tiny_model_dir(directory: Path, seed: int = 0, **model) -> Path:
    config = load_config({"model": {**TINY, **model}})
    torch.manual_seed(seed)
    save_model_dir(directory, config, build_model(config))
    return directory


# --- import: parity with transformers ----------------------------------------------------------


@pytest.mark.data_files("gpt2.tiktoken")
def test_import_matches_hf_logits(hf, imported):
    config, model, tokenizer = load_model_dir(imported)
    assert not model.training
    m = config.model
    assert (m.n_layers, m.emb_dim, m.n_heads, m.context_length, m.vocab_size) == (2, 64, 4, 128, 50257)
    assert m.attention.name == "sdpa" and m.attention.params["qkv_bias"] is True
    assert m.attention.params["n_kv_heads"] is None and m.attention.params["out_bias"] is True
    assert m.positional.name == "absolute" and m.feedforward.name == "gelu"
    assert m.norm.params["eps"] == 1e-5 and m.head.params["tie_weights"] is True
    assert m.arch.name == "gpt" and m.arch.params["init"] == "normal"
    assert model.head.proj.weight is model.embedding.weight  # tied, as GPT-2
    assert tokenizer is not None and tokenizer.name == "tiktoken" and tokenizer.vocab_size == 50257
    ids = ids_batch(50257)
    torch.testing.assert_close(model(ids).detach(), hf_logits(hf[1], ids), atol=1e-5, rtol=0)


def test_import_with_the_reference_mha_attention_matches_too(hf, tmp_path):
    import_gpt2(hf[0], tmp_path / "model", attention="mha")
    config, model, _ = load_model_dir(tmp_path / "model")
    assert config.model.attention.name == "mha"
    ids = ids_batch(50257)
    torch.testing.assert_close(model(ids).detach(), hf_logits(hf[1], ids), atol=1e-5, rtol=0)


@pytest.mark.slow
@pytest.mark.data_files("gpt2.tiktoken")
def test_greedy_generation_matches_hf(hf, imported):
    _, model, tokenizer = load_model_dir(imported)
    prompt = torch.tensor([tokenizer.encode("Every effort moves you")])
    theirs = hf[1].generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                            max_new_tokens=20, min_new_tokens=20, pad_token_id=50256)
    ours = greedy(model, prompt, 20)
    assert ours.shape == (1, prompt.shape[1] + 20)
    assert ours.tolist() == theirs.tolist()
    cached = generate_ids(model, prompt, max_new_tokens=20)  # our KV-cache sampler agrees too
    assert cached.tokens.tolist() == theirs.tolist()


@pytest.mark.slow
@pytest.mark.data_files("gpt2.tiktoken")
def test_export_round_trip_matches_hf(hf, imported, tmp_path):
    result = export_hf(imported, tmp_path / "hf")
    assert sorted(p.name for p in (tmp_path / "hf").iterdir()) == ["config.json", "model.safetensors"]
    assert result.hf_config["tie_word_embeddings"] is True
    assert result.hf_config["eos_token_id"] == 50256
    # Every tensor comes back bit for bit (transposes and splits are exact).
    original = load_file(str(hf[0] / "model.safetensors"))
    exported = load_file(str(tmp_path / "hf" / "model.safetensors"))
    assert set(exported) == set(original)
    for name, tensor in original.items():
        assert torch.equal(exported[name], tensor), name
    back = GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    assert back.dtype == torch.float32
    assert back.lm_head.weight.data_ptr() == back.transformer.wte.weight.data_ptr()
    ids = ids_batch(50257, seed=2)
    torch.testing.assert_close(hf_logits(back, ids), hf_logits(hf[1], ids), atol=1e-5, rtol=0)
    prompt = ids[:1, :5]
    kwargs = {"do_sample": False, "max_new_tokens": 20, "min_new_tokens": 20, "pad_token_id": 50256,
              "attention_mask": torch.ones_like(prompt)}
    assert back.generate(prompt, **kwargs).tolist() == hf[1].generate(prompt, **kwargs).tolist()


def test_untied_head_small_vocab_and_wide_mlp_round_trip(tmp_path):
    hf_model = save_hf(tmp_path / "hf", seed=3, vocab_size=300, tie_word_embeddings=False,
                       n_inner=96, layer_norm_epsilon=1e-6)
    result = import_gpt2(tmp_path / "hf", tmp_path / "model")
    m = result.config.model
    assert m.head.params["tie_weights"] is False and m.tokenizer is None
    assert m.feedforward.params["hidden_mult"] == 1.5 and m.norm.params["eps"] == 1e-6
    assert any("no tokenizer" in note for note in result.notes)
    assert not (tmp_path / "model" / "tokenizer").exists()
    _, model, tokenizer = load_model_dir(tmp_path / "model")
    assert tokenizer is None and model.head.proj.weight is not model.embedding.weight
    ids = ids_batch(300)
    torch.testing.assert_close(model(ids).detach(), hf_logits(hf_model, ids), atol=1e-5, rtol=0)

    out = export_hf(tmp_path / "model", tmp_path / "back")
    assert out.hf_config["tie_word_embeddings"] is False and out.hf_config["n_inner"] == 96
    assert "lm_head.weight" in load_file(str(tmp_path / "back" / "model.safetensors"))
    back = GPT2LMHeadModel.from_pretrained(tmp_path / "back").eval()
    assert not back.config.tie_word_embeddings
    torch.testing.assert_close(hf_logits(back, ids), hf_logits(hf_model, ids), atol=1e-5, rtol=0)


def test_native_model_without_qkv_bias_exports_with_zero_biases(tmp_path):
    directory = tiny_model_dir(tmp_path / "model", attention={"name": "sdpa", "qkv_bias": False},
                               feedforward={"name": "gelu", "hidden_mult": 2},
                               head={"name": "lm", "tie_weights": False})
    _, model, _ = load_model_dir(directory)
    result = export_hf(directory, tmp_path / "hf")
    assert result.hf_config["n_inner"] == 64 and result.hf_config["eos_token_id"] is None
    tensors = load_file(str(tmp_path / "hf" / "model.safetensors"))
    assert torch.count_nonzero(tensors["transformer.h.0.attn.c_attn.bias"]) == 0
    back = GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    ids = ids_batch(97, shape=(3, 32))
    torch.testing.assert_close(hf_logits(back, ids), model(ids).detach(), atol=1e-5, rtol=0)


def test_unprefixed_fp16_sharded_checkpoints_import(hf, tmp_path):
    """GPT2Model-style names (no `transformer.`), half precision, and index-listed shards."""
    tensors = load_file(str(hf[0] / "model.safetensors"))
    names = sorted(tensors)
    half = {n.removeprefix("transformer."): t.half() for n, t in tensors.items()}
    src = tmp_path / "sharded"
    src.mkdir()
    (src / "config.json").write_text((hf[0] / "config.json").read_text())
    shards = {"a.safetensors": names[: len(names) // 2], "b.safetensors": names[len(names) // 2:]}
    weight_map = {}
    for shard, members in shards.items():
        part = {n.removeprefix("transformer."): half[n.removeprefix("transformer.")] for n in members}
        save_file(part, str(src / shard), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, shard))
    (src / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    import_gpt2(src, tmp_path / "model")
    _, model, _ = load_model_dir(tmp_path / "model")
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert torch.equal(model.embedding.weight, half["wte.weight"].float())
    hf_half = {n: t.float() for n, t in half.items()}
    _, read = read_hf_checkpoint(src)
    assert set(read) == set(hf_half)


# --- import: errors ---------------------------------------------------------------------------


@pytest.mark.parametrize("field,value", [
    ("scale_attn_by_inverse_layer_idx", True),
    ("reorder_and_upcast_attn", True),
    ("scale_attn_weights", False),
    ("add_cross_attention", True),
    ("activation_function", "relu"),
    ("activation_function", "silu"),
    ("model_type", "llama"),
    ("n_embd", "big"),
    ("n_inner", 0),
    ("resid_pdrop", 1.5),
])
def test_unsupported_hf_configs_name_the_field(field, value):
    config = {**GPT2Config(**SHAPE).to_dict(), field: value}
    with pytest.raises(ConfigError) as info:
        config_from_hf(config)
    message = str(info.value)
    assert field in message and "\n" not in message


def test_config_from_hf_maps_gpt2_fields():
    raw = config_from_hf({"model_type": "gpt2", "n_embd": 768, "n_layer": 12, "n_head": 12,
                          "n_ctx": 1024, "vocab_size": 50257, "layer_norm_epsilon": 1e-5,
                          "activation_function": "gelu_new", "resid_pdrop": 0.0})
    model = load_config(raw).model
    assert model.context_length == 1024 and model.dropout == 0.0
    assert model.tokenizer.to_data() == {"name": "tiktoken", "encoding": "gpt2", "file": None}
    assert model.feedforward.to_data() == {"name": "gelu", "hidden_mult": 4.0, "bias": True,
                                           "approximate": "tanh"}


def test_exact_gelu_checkpoints_import_and_export_with_matching_logits(tmp_path):
    """HF's activation_function 'gelu' (exact) maps to gelu approximate: none, both ways."""
    from llmbricks.plugins.weights.gpt2_hf import export_hf, import_gpt2

    hf_model = save_hf(tmp_path / "hf", activation_function="gelu")
    import_gpt2(tmp_path / "hf", tmp_path / "ours")
    _, ours, _ = load_model_dir(tmp_path / "ours")
    assert ours.blocks[0].ff.params.approximate == "none"
    ids = ids_batch(hf_model.config.vocab_size)
    with torch.no_grad():
        assert torch.allclose(ours(ids), hf_logits(hf_model, ids), atol=1e-5)
    export_hf(tmp_path / "ours", tmp_path / "back")
    assert json.loads((tmp_path / "back" / "config.json").read_text())["activation_function"] == "gelu"


def test_import_errors_are_clear(hf, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        import_gpt2(tmp_path / "nowhere", tmp_path / "out")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="holds no config.json"):
        import_gpt2(empty, tmp_path / "out")
    (empty / "config.json").write_text((hf[0] / "config.json").read_text())
    with pytest.raises(CheckpointError, match="holds no model.safetensors"):
        import_gpt2(empty, tmp_path / "out")
    (empty / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(CheckpointError, match="never unpickles"):
        import_gpt2(empty, tmp_path / "out")
    (empty / "model.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        import_gpt2(empty, tmp_path / "out")
    (empty / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="cannot read"):
        import_gpt2(empty, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_import_rejects_weights_that_do_not_fit_the_config(hf, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    config = json.loads((hf[0] / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**config, "n_embd": 128}))
    (src / "model.safetensors").write_bytes((hf[0] / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match=r"transformer.wte.weight has shape \[50257, 64\] but "
                                              r"config.json implies \[50257, 128\]"):
        import_gpt2(src, tmp_path / "out")
    (src / "config.json").write_text(json.dumps({**config, "n_layer": 3}))
    with pytest.raises(CheckpointError, match="missing, e.g. transformer.h.2"):
        import_gpt2(src, tmp_path / "out")
    (src / "config.json").write_text(json.dumps({**config, "tie_word_embeddings": False}))
    with pytest.raises(CheckpointError, match="lm_head.weight"):
        import_gpt2(src, tmp_path / "out")


def test_import_refuses_a_non_empty_output(hf, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="not empty"):
        import_gpt2(hf[0], out)
    with pytest.raises(CheckpointError, match="not a model directory.*even with --overwrite"):
        import_gpt2(hf[0], out, overwrite=True)  # a user's folder is never replaced
    assert (out / "keep.txt").read_text() == "mine"
    import_gpt2(hf[0], tmp_path / "model")
    import_gpt2(hf[0], tmp_path / "model", overwrite=True)  # a model directory is
    assert (tmp_path / "model" / "model.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "out"]  # no temporary leftovers


# --- export: errors ---------------------------------------------------------------------------


@pytest.mark.parametrize("model,message", [
    ({"positional": "none"}, "model.positional: 'none' cannot be exported to GPT-2 (it needs 'absolute')"),
    ({"positional": "rope"}, "model.positional: 'rope' cannot be exported to GPT-2 (it needs 'absolute')"),
    ({"norm": "rmsnorm"}, "model.norm: 'rmsnorm' cannot be exported to GPT-2 (it needs 'layernorm')"),
    ({"feedforward": "swiglu"}, "model.feedforward: 'swiglu' cannot be exported to GPT-2 (it needs 'gelu')"),
    ({"attention": {"name": "sdpa", "n_kv_heads": 2}},
     "model.attention.n_kv_heads: 2 cannot be exported to GPT-2"),
    ({"norm": {"name": "layernorm", "bias": False}}, "model.norm.bias: false cannot be exported"),
    ({"feedforward": {"name": "gelu", "bias": False}},
     "model.feedforward.bias: false cannot be exported"),
])
def test_check_exportable_names_the_component(model, message):
    with pytest.raises(ConfigError) as info:
        check_exportable(load_config({"model": {**TINY, **model}}))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_check_exportable_accepts_full_heads_spelled_out():
    check_exportable(load_config({"model": {**TINY, "attention": {"name": "mha", "n_kv_heads": 4}}}))
    check_exportable(load_config({"model": {"preset": "gpt2-small"}}))


def test_export_of_an_incompatible_model_fails_before_writing(tmp_path):
    directory = tiny_model_dir(tmp_path / "model", positional="none")
    with pytest.raises(ConfigError, match="model.positional: 'none'"):
        export_hf(directory, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()
    with pytest.raises(CheckpointError, match="does not exist"):
        export_hf(tmp_path / "nowhere", tmp_path / "hf")


def test_to_hf_state_dict_refuses_extra_parameters():
    config = load_config({"model": TINY})
    state = dict(build_model(config).state_dict())
    state["blocks.0.attn.q_proj.lora_a"] = torch.zeros(2, 2)
    with pytest.raises(ConfigError, match="no place for: blocks.0.attn.q_proj.lora_a"):
        to_hf_state_dict(state, n_layers=2, tied=True)


# --- model directories ------------------------------------------------------------------------


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.data_files("gpt2.tiktoken")
def test_model_dir_round_trip(tmp_path, tied):
    config = load_config({"model": {**TINY, "vocab_size": 50257, "tokenizer": "tiktoken",
                                    "head": {"name": "lm", "tie_weights": tied}}})
    torch.manual_seed(0)
    tokenizer = build_tokenizer(config)
    model = build_model(config, tokenizer=tokenizer).eval()
    save_model_dir(tmp_path / "model", config, model, tokenizer)
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [
        "config.yaml", "model.safetensors", "tokenizer"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    loaded_config, loaded, loaded_tok = load_model_dir(tmp_path / "model")
    assert loaded_config == config
    assert (loaded.head.proj.weight is loaded.embedding.weight) is tied
    original, restored = model.state_dict(), loaded.state_dict()
    assert list(original) == list(restored)
    for name in original:
        assert torch.equal(original[name], restored[name]), name
    ids = ids_batch(50257, shape=(2, 16))
    assert torch.equal(model(ids), loaded(ids))
    assert loaded_tok.encode("hello world") == tokenizer.encode("hello world")


def test_model_dir_writes_the_vocab_size_of_the_model(tmp_path):
    config = load_config({"model": {**TINY, "vocab_size": "auto"}})
    model = build_model(config.model.model_copy(update={"vocab_size": 97}))
    save_model_dir(tmp_path / "m", config, model)
    loaded_config, loaded, tokenizer = load_model_dir(tmp_path / "m")
    assert loaded_config.model.vocab_size == 97 and tokenizer is None
    assert config.model.vocab_size == "auto"  # the caller's config is not changed


def test_save_model_dir_refuses_a_non_empty_directory(tmp_path):
    tiny_model_dir(tmp_path / "m")
    before = (tmp_path / "m" / "model.safetensors").read_bytes()
    with pytest.raises(CheckpointError, match="not empty"):
        tiny_model_dir(tmp_path / "m", seed=1)
    assert (tmp_path / "m" / "model.safetensors").read_bytes() == before
    config = load_config({"model": TINY})
    torch.manual_seed(1)
    save_model_dir(tmp_path / "m", config, build_model(config), overwrite=True)
    assert (tmp_path / "m" / "model.safetensors").read_bytes() != before
    (tmp_path / "empty").mkdir()
    tiny_model_dir(tmp_path / "empty")  # an existing empty directory is fine
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match="not a directory"):
        tiny_model_dir(tmp_path / "file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "file", "m"]


def test_failed_save_leaves_nothing_behind(tmp_path):
    class Broken:
        def save(self, directory):
            raise OSError("disk full")

    config = load_config({"model": TINY})
    with pytest.raises(CheckpointError, match=r"cannot write .*m: the write failed \(disk full\)"):
        save_model_dir(tmp_path / "m", config, build_model(config), Broken())
    assert list(tmp_path.iterdir()) == []


def test_load_model_dir_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model_dir(tmp_path / "nowhere")
    directory = tiny_model_dir(tmp_path / "m")
    weights = (directory / "model.safetensors").read_bytes()
    config_text = (directory / "config.yaml").read_text()

    (directory / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors is missing"):
        load_model_dir(directory)
    (directory / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(CheckpointError, match="is not readable safetensors") as info:
        load_model_dir(directory)
    assert "\n" not in str(info.value)
    (directory / "model.safetensors").write_bytes(weights)
    (directory / "config.yaml").write_text(config_text.replace("emb_dim: 32", "emb_dim: 64"))
    with pytest.raises(CheckpointError, match="size mismatch") as info:
        load_model_dir(directory)
    assert "\n" not in str(info.value)
    (directory / "config.yaml").write_text(config_text.replace("tie_weights: true",
                                                               "tie_weights: false"))
    with pytest.raises(CheckpointError, match="does not match the model config.yaml describes: "
                                              "missing"):
        load_model_dir(directory)
    (directory / "config.yaml").write_text(config_text.replace("name: absolute", "name: nosuch"))
    with pytest.raises(ComponentError, match="model.positional: unknown positional 'nosuch'"):
        load_model_dir(directory)
    (directory / "config.yaml").unlink()
    with pytest.raises(CheckpointError, match="config.yaml is missing"):
        load_model_dir(directory)
