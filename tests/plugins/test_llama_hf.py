"""Llama-shaped families (Llama, Mistral, Qwen2, Qwen3, OLMo 2, Gemma 2/3, Phi-3) against transformers: import, logits, cache, export.

Each case builds a tiny random ``XForCausalLM`` with transformers, saves it as a Hugging Face
folder, imports it, and holds llmbricks to transformers on the same weights: logits (fp32, max
abs diff <= 1e-4) on a right-padded ragged batch (40 tokens: past Mistral's window of 8), 20
greedy tokens through the KV cache, and an
export that ``from_pretrained`` reads back to the same logits with every tensor bit for bit.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers
from safetensors.torch import load_file

from llmbricks.core.errors import CheckpointError, ConfigError
from llmbricks.core.store.model_dir import load_model_dir
from llmbricks.core.tasks.generation import generate_ids
from llmbricks.plugins.weights.llama_hf import (
    HF_SOURCE_FILE,
    config_from_llama,
    export_llama,
    import_llama,
)

SHAPE = {"vocab_size": 151, "hidden_size": 64, "intermediate_size": 88, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 96}

CASES = {
    "llama": ("Llama", {}),
    "llama-bias-tied": ("Llama", {"attention_bias": True, "tie_word_embeddings": True}),
    "llama3-rope": ("Llama", {"rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0,
                                                  "factor": 8.0, "low_freq_factor": 1.0,
                                                  "high_freq_factor": 4.0,
                                                  "original_max_position_embeddings": 16}}),
    "llama-linear-rope": ("Llama", {"rope_parameters": {"rope_type": "linear", "rope_theta": 10000.0,
                                                        "factor": 2.0}}),
    "llama-head-dim": ("Llama", {"head_dim": 24}),
    "mistral": ("Mistral", {"sliding_window": None}),
    "mistral-window": ("Mistral", {"sliding_window": 8}),
    "qwen2": ("Qwen2", {}),
    "qwen3": ("Qwen3", {"head_dim": 24}),
    "qwen3-tied": ("Qwen3", {"tie_word_embeddings": True, "attention_bias": True}),
    "olmo2": ("Olmo2", {"pad_token_id": 0}),
    "gemma2": ("Gemma2", {"head_dim": 24, "num_hidden_layers": 4, "sliding_window": 8}),
    "gemma3": ("Gemma3", {"head_dim": 24, "num_hidden_layers": 6, "sliding_window": 8,
                          "rope_parameters": {
                              "full_attention": {"rope_type": "linear", "rope_theta": 1e6, "factor": 8.0},
                              "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}}),
    "phi3": ("Phi3", {"pad_token_id": 0, "eos_token_id": 2}),
    "phi3-partial-rotary": ("Phi3", {"pad_token_id": 0, "eos_token_id": 2,
                                     "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                                                         "partial_rotary_factor": 0.5}}),
}


def save_family(directory: Path, family: str, seed: int = 0, **fields) -> torch.nn.Module:
    """A random ``{family}ForCausalLM`` saved as safetensors, as ``save_pretrained`` writes it."""
    torch.manual_seed(seed)
    config_class = "Gemma3TextConfig" if family == "Gemma3" else f"{family}Config"
    config = getattr(transformers, config_class)(**{**SHAPE, **fields})
    model = getattr(transformers, f"{family}ForCausalLM")(config).eval()
    with torch.no_grad():  # norms start at 1 and biases at 0: move them so a mix-up shows
        for name, tensor in model.named_parameters():
            if name.endswith(("layernorm.weight", "norm.weight", ".bias")):
                tensor.add_(torch.randn_like(tensor) * 0.1)
    model.save_pretrained(directory)
    return model


@pytest.fixture(scope="module", params=list(CASES))
def family_case(request, tmp_path_factory):
    family, fields = CASES[request.param]
    base = tmp_path_factory.mktemp(request.param)
    hf_model = save_family(base / "hf", family, **fields)
    result = import_llama(base / "hf", base / "ours")
    config, model, _ = load_model_dir(base / "ours")
    return base, hf_model, result, model


def ragged_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Three prompts of 40, 27 and 9 tokens, right-padded with token 0, and their mask."""
    generator = torch.Generator().manual_seed(3)
    ids = torch.randint(1, SHAPE["vocab_size"], (3, 40), generator=generator)
    mask = torch.ones_like(ids)
    for row, length in enumerate((40, 27, 9)):
        ids[row, length:], mask[row, length:] = 0, 0
    return ids, mask


@torch.no_grad()
def test_logits_equal_transformers_on_a_ragged_batch(family_case):
    _, hf_model, _, model = family_case
    ids, mask = ragged_batch()
    theirs = hf_model(ids, attention_mask=mask).logits
    ours = model(ids)
    real = mask.bool()  # right padding: every real position sees only real tokens before it
    assert (theirs[real] - ours[real]).abs().max().item() <= 1e-4


@torch.no_grad()
def test_twenty_greedy_tokens_through_the_cache_equal_transformers(family_case):
    _, hf_model, _, model = family_case
    prompt = ragged_batch()[0][:1, :12]
    hf_model.generation_config.eos_token_id = None  # 20 tokens, none of them held back
    theirs = hf_model.generate(prompt, max_new_tokens=20, do_sample=False, pad_token_id=0)[:, 12:]
    ours = generate_ids(model, prompt, max_new_tokens=20, use_cache=True).tokens[:, 12:]
    assert ours.tolist() == theirs.tolist()


@torch.no_grad()
def test_export_loads_in_transformers_with_every_tensor_bit_for_bit(family_case):
    base, hf_model, result, _ = family_case
    hf_config = export_llama(base / "ours", base / "export")
    assert hf_config["model_type"] == result.family
    again = transformers.AutoModelForCausalLM.from_pretrained(base / "export").eval()
    assert type(again) is type(hf_model)
    exported = load_file(base / "export" / "model.safetensors")
    original = hf_model.state_dict()
    tied = hf_model.config.tie_word_embeddings
    assert set(exported) == {n for n in original if not (tied and n == "lm_head.weight")}
    for name, tensor in exported.items():
        assert torch.equal(tensor, original[name]), name
    ids, mask = ragged_batch()
    assert torch.equal(again(ids, attention_mask=mask).logits, hf_model(ids, attention_mask=mask).logits)


def test_the_import_keeps_the_source_config_and_counts_parameters(family_case):
    base, hf_model, result, _ = family_case
    assert json.loads((base / "ours" / HF_SOURCE_FILE).read_text())["model_type"] == result.family
    assert result.parameters == sum(p.numel() for p in hf_model.parameters())


@pytest.mark.parametrize("fields,words", [
    ({"model_type": "falcon"}, ("model_type \"falcon\" is not supported", "llama, mistral, qwen2, qwen3, olmo2, gemma2, gemma3_text, phi3")),
    ({"partial_rotary_factor": 0.5}, ("partial_rotary_factor 0.5 is not supported for llama",)),
    ({"hidden_act": "gelu"}, ("hidden_act \"gelu\" is not supported",)),
    ({"mlp_bias": True}, ("mlp_bias=true is not supported",)),
    ({"rope_parameters": {"rope_type": "yarn", "factor": 4.0}}, ("rope_type \"yarn\"",)),
    ({"head_dim": 0}, ("head_dim must be a positive integer",)),
    ({"hidden_size": 66}, ("hidden_size 66 is not divisible by num_attention_heads 4",)),
    ({"num_key_value_heads": 3}, ("num_key_value_heads 3 must divide",)),
    ({"model_type": "mistral", "sliding_window": 0}, ("sliding_window must be a positive integer",)),
    ({"model_type": "qwen2", "use_sliding_window": True}, ("use_sliding_window=true",)),
    ({"layer_types": ["sliding_attention", "full_attention"]}, ("layer_types",)),
    ({"rms_norm_eps": float("nan")}, ("rms_norm_eps must be a finite number",)),
])
def test_an_unsupported_field_is_refused_naming_it(fields, words):
    hf = {"model_type": "llama", **SHAPE, **fields}
    with pytest.raises(ConfigError) as info:
        config_from_llama(hf)
    message = str(info.value)
    assert "\n" not in message and all(word in message for word in words), message


def test_a_missing_or_misshapen_tensor_is_named(tmp_path):
    save_family(tmp_path / "hf", "Llama")
    weights = load_file(tmp_path / "hf" / "model.safetensors")
    from safetensors.torch import save_file

    del weights["model.layers.1.mlp.up_proj.weight"]
    save_file(weights, tmp_path / "hf" / "model.safetensors")
    with pytest.raises(CheckpointError, match="model.layers.1.mlp.up_proj.weight"):
        import_llama(tmp_path / "hf", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    weights["model.layers.1.mlp.up_proj.weight"] = torch.zeros(5, 5)
    save_file(weights, tmp_path / "hf" / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"has shape \[5, 5\] but config.json implies \[88, 64\]"):
        import_llama(tmp_path / "hf", tmp_path / "out")


def test_sharded_checkpoints_import_the_same(tmp_path):
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**SHAPE)).eval()
    model.save_pretrained(tmp_path / "sharded", max_shard_size="40KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    import_llama(tmp_path / "sharded", tmp_path / "ours")
    _, ours, _ = load_model_dir(tmp_path / "ours")
    ids = ragged_batch()[0]
    with torch.no_grad():
        assert (model(ids).logits - ours(ids)).abs().max().item() <= 1e-4


def test_generation_never_picks_an_id_past_the_tokenizer(family_case):
    """Embedding tables are often padded past the tokenizer (Qwen): such ids have no text."""
    _, _, _, model = family_case

    def padding_wins(_module, _inputs, logits):  # the padding rows would win every choice
        return torch.cat([logits[..., :100], logits[..., 100:] + 1e4], dim=-1)

    hook = model.head.register_forward_hook(padding_wins)
    try:
        prompt = ragged_batch()[0][:1, :6]
        free = generate_ids(model, prompt, max_new_tokens=8).tokens[0, 6:]
        limited = generate_ids(model, prompt, max_new_tokens=8, vocab_limit=100).tokens[0, 6:]
        sampled = generate_ids(model, prompt, max_new_tokens=8, vocab_limit=100, temperature=1.0,
                               seed=0, use_cache=False).tokens[0, 6:]
        drafted = generate_ids(model, prompt, max_new_tokens=8, vocab_limit=100,
                               prompt_lookup=4).tokens[0, 6:]
    finally:
        hook.remove()
    assert (free >= 100).all()
    assert (limited < 100).all() and (sampled < 100).all() and (drafted < 100).all()
