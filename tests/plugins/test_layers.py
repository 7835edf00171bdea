"""Built-in layers against their equations and the book's reference formulas."""

from __future__ import annotations

import math

import pytest
import torch

from llmbricks.core.component import Dims
from llmbricks.core.registry import Registry

REG = Registry()
DIMS = Dims(vocab_size=20, context_length=12, emb_dim=16, n_heads=4, n_kv_heads=4, n_layers=2,
            dropout=0.0)


def test_layernorm_is_the_books_formula():
    norm = REG.build("norm", "layernorm", dims=DIMS)
    with torch.no_grad():
        norm.weight.uniform_()
        norm.bias.uniform_()
    x = torch.randn(2, 5, 16)
    mean = x.mean(-1, keepdim=True)
    var = x.var(-1, keepdim=True, unbiased=False)  # the book's biased variance
    expected = (x - mean) / torch.sqrt(var + 1e-5) * norm.weight + norm.bias
    torch.testing.assert_close(norm(x), expected, atol=1e-5, rtol=1e-5)


def test_gelu_feedforward_uses_the_tanh_approximation():
    ff = REG.build("feedforward", "gelu", dims=DIMS)
    assert ff.up.out_features == 64  # 4x width
    x = torch.randn(3, 16)
    h = ff.up(x)
    gelu = 0.5 * h * (1 + torch.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h**3)))
    torch.testing.assert_close(ff(x), ff.down(gelu), atol=1e-6, rtol=1e-5)


def test_mha_matches_the_explicit_equation():
    torch.manual_seed(0)
    attn = REG.build("attention", "mha", dims=DIMS).eval()
    positional = REG.build("positional", "none", dims=DIMS)
    x = torch.randn(2, 6, 16)
    out = attn(x, positional, positional.context(torch.arange(6), torch.arange(6)))
    q = attn.q_proj(x).view(2, 6, 4, 4).transpose(1, 2)
    k = attn.k_proj(x).view(2, 6, 4, 4).transpose(1, 2)
    v = attn.v_proj(x).view(2, 6, 4, 4).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) / 2.0
    scores = scores + torch.full((6, 6), float("-inf")).triu(1)
    expected = attn.out_proj((scores.softmax(-1) @ v).transpose(1, 2).reshape(2, 6, 16))
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-5)


def test_gqa_equals_mha_with_repeated_kv_heads():
    torch.manual_seed(0)
    gqa_dims = Dims(**{**DIMS.__dict__, "n_kv_heads": 2})
    gqa = REG.build("attention", {"name": "mha", "n_kv_heads": 2}, dims=gqa_dims).eval()
    full = REG.build("attention", "mha", dims=DIMS).eval()
    with torch.no_grad():
        full.q_proj.weight.copy_(gqa.q_proj.weight)
        full.out_proj.load_state_dict(gqa.out_proj.state_dict())
        for name in ("k_proj", "v_proj"):
            w = getattr(gqa, name).weight.view(2, 4, 16).repeat_interleave(2, dim=0).reshape(16, 16)
            getattr(full, name).weight.copy_(w)
    positional = REG.build("positional", "none", dims=DIMS)
    x = torch.randn(2, 7, 16)
    torch.testing.assert_close(gqa(x, positional, positional.context(torch.arange(7), torch.arange(7))), full(x, positional, positional.context(torch.arange(7), torch.arange(7))))


def test_attention_dropout_applies_to_weights_in_training_only():
    drop_dims = Dims(**{**DIMS.__dict__, "dropout": 0.5})
    attn = REG.build("attention", "mha", dims=drop_dims)
    positional = REG.build("positional", "none", dims=drop_dims)
    x = torch.randn(1, 8, 16)
    attn.train()
    torch.manual_seed(1)
    a = attn(x, positional, positional.context(torch.arange(8), torch.arange(8)))
    torch.manual_seed(2)
    b = attn(x, positional, positional.context(torch.arange(8), torch.arange(8)))
    assert not torch.allclose(a, b)
    attn.eval()
    torch.testing.assert_close(attn(x, positional, positional.context(torch.arange(8), torch.arange(8))), attn(x, positional, positional.context(torch.arange(8), torch.arange(8))))


def test_absolute_positions_past_the_table_fail_clearly():
    from llmbricks.core.build import build_model
    from llmbricks.core.config import load_config

    model = build_model(load_config({"model": {"vocab_size": 20, "context_length": 12, "emb_dim": 16,
                                               "n_heads": 4, "n_layers": 1}}))
    with pytest.raises(ValueError, match="sequence of 13 tokens is past the 12 positions of positional 'absolute'"):
        model(torch.zeros(1, 13, dtype=torch.long))


def test_char_tokenizer():
    tok = REG.build("tokenizer", "char")
    tok.train(["hello", " world"])
    assert tok.vocab_size == 8
    assert tok.decode(tok.encode("hello world")) == "hello world"
    from llmbricks.core.errors import DataError

    with pytest.raises(DataError, match="character 'z' at offset 0 is not in the 'char' tokenizer's vocabulary"):
        tok.encode("z")
    special = REG.build("tokenizer", {"name": "char", "chars": "ab", "special_tokens": ["<|endoftext|>"]})
    assert special.encode("ab<|endoftext|>", allowed_special="all") == [0, 1, 2]
    assert special.decode([0, 2]) == "a<|endoftext|>"
    assert special.vocab_size == 3


# --- the options real families need: norm offset, GeGLU, embedding scale, logit soft-cap -------


def test_rmsnorm_default_is_the_plain_formula_with_a_unit_weight():
    norm = REG.build("norm", "rmsnorm", dims=DIMS)
    assert list(norm.state_dict()) == ["weight"] and torch.equal(norm.weight, torch.ones(16))
    with torch.no_grad():
        norm.weight.uniform_()
    x = torch.randn(2, 5, 16)
    expected = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * norm.weight
    torch.testing.assert_close(norm(x), expected, atol=1e-6, rtol=1e-5)


def test_rmsnorm_offset_scales_by_offset_plus_weight_from_a_zero_weight():
    norm = REG.build("norm", {"name": "rmsnorm", "offset": 1.0}, dims=DIMS)
    assert list(norm.state_dict()) == ["weight"] and torch.equal(norm.weight, torch.zeros(16))
    x = torch.randn(2, 5, 16)
    unit = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
    torch.testing.assert_close(norm(x), unit, atol=1e-6, rtol=1e-5)  # 1 + 0: the plain rms
    with torch.no_grad():
        norm.weight.normal_()
    torch.testing.assert_close(norm(x), unit * (1.0 + norm.weight), atol=1e-6, rtol=1e-5)
    half = REG.build("norm", {"name": "rmsnorm", "offset": 0.5}, dims=DIMS)
    assert torch.equal(half.weight, torch.full((16,), 0.5))  # offset + weight starts at 1


def test_rmsnorm_offset_computes_in_float32_and_rounds_once():
    norm = REG.build("norm", {"name": "rmsnorm", "offset": 1.0}, dims=DIMS)
    with torch.no_grad():
        norm.weight.normal_()
    norm = norm.to(torch.bfloat16)
    x = torch.randn(2, 5, 16).to(torch.bfloat16)
    x32, w32 = x.float(), norm.weight.float()
    expected = (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + 1e-6) * (1.0 + w32))
    out = norm(x)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, expected.to(torch.bfloat16), atol=0, rtol=0)


def test_rmsnorm_offset_is_checked():
    from llmbricks.core.errors import ConfigError

    with pytest.raises(ConfigError, match="offset: input should be less than or equal to 1"):
        REG.build("norm", {"name": "rmsnorm", "offset": 2.0}, dims=DIMS)


def test_geglu_is_swiglu_with_a_tanh_gelu_gate_and_the_same_weights():
    torch.manual_seed(0)
    swiglu = REG.build("feedforward", {"name": "swiglu", "hidden": 24}, dims=DIMS)
    geglu = REG.build("feedforward", {"name": "geglu", "hidden": 24}, dims=DIMS)
    assert list(geglu.state_dict()) == list(swiglu.state_dict()) == ["gate.weight", "up.weight",
                                                                      "down.weight"]
    geglu.load_state_dict(swiglu.state_dict(), strict=True)
    assert geglu.residual_projections() == [geglu.down]
    x = torch.randn(3, 16)
    g = geglu.gate(x)
    gelu = 0.5 * g * (1 + torch.tanh(math.sqrt(2 / math.pi) * (g + 0.044715 * g**3)))
    torch.testing.assert_close(geglu(x), geglu.down(gelu * geglu.up(x)), atol=1e-6, rtol=1e-5)
    silu = swiglu.gate(x) * torch.sigmoid(swiglu.gate(x))
    torch.testing.assert_close(swiglu(x), swiglu.down(silu * swiglu.up(x)), atol=1e-6, rtol=1e-5)
    # the width rule is the same: 8/3 x 16 = 42, rounded up to 64
    assert REG.build("feedforward", "geglu", dims=DIMS).gate.out_features == 64


def test_token_embedding_sqrt_dim_scale_rounds_the_factor_to_the_tables_dtype():
    torch.manual_seed(0)
    dims = Dims(**{**DIMS.__dict__, "emb_dim": 3072})  # Gemma 7B's width: sqrt = 55.4256...
    plain = REG.build("embedding", "token", dims=dims)
    scaled = REG.build("embedding", {"name": "token", "scale": "sqrt_dim"}, dims=dims)
    assert list(scaled.state_dict()) == list(plain.state_dict()) == ["table.weight"]
    scaled.load_state_dict(plain.state_dict(), strict=True)
    ids = torch.randint(0, 20, (2, 7))
    torch.testing.assert_close(scaled(ids), plain(ids) * math.sqrt(3072), atol=1e-5, rtol=1e-6)
    assert torch.equal(plain(ids), plain.weight[ids])
    scaled = scaled.to(torch.bfloat16)
    out = scaled(ids)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, scaled.weight[ids] * torch.tensor(55.5, dtype=torch.bfloat16))
    assert scaled.weight is scaled.table.weight  # a tied head gets the raw table


def test_a_tied_head_uses_the_unscaled_table():
    from llmbricks.core.build import build_model
    from llmbricks.core.config import load_config

    torch.manual_seed(0)
    model = build_model(load_config({"model": {
        "vocab_size": 20, "context_length": 12, "emb_dim": 16, "n_heads": 4, "n_layers": 1,
        "embedding": {"name": "token", "scale": "sqrt_dim"}}})).eval()
    assert model.head.proj.weight is model.embedding.table.weight
    hidden = model.hidden(torch.randint(0, 20, (1, 5)))
    torch.testing.assert_close(model.head(hidden), hidden @ model.embedding.table.weight.T)


def test_lm_head_softcap_bounds_the_logits():
    torch.manual_seed(0)
    plain = REG.build("head", {"name": "lm", "tie_weights": False}, dims=DIMS)
    capped = REG.build("head", {"name": "lm", "tie_weights": False, "softcap": 3.0}, dims=DIMS)
    assert list(capped.state_dict()) == list(plain.state_dict()) == ["proj.weight"]
    capped.load_state_dict(plain.state_dict(), strict=True)
    hidden = torch.randn(2, 5, 16) * 50
    raw = plain(hidden)
    assert torch.equal(raw, hidden @ plain.proj.weight.T)
    torch.testing.assert_close(capped(hidden), 3.0 * torch.tanh(raw / 3.0))
    assert raw.abs().max() > 3.0 and capped(hidden).abs().max() <= 3.0
    from llmbricks.core.errors import ConfigError

    with pytest.raises(ConfigError, match="softcap: input should be greater than 0"):
        REG.build("head", {"name": "lm", "softcap": 0.0}, dims=DIMS)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_default_layers_keep_their_names_and_outputs(family):
    """The new options change nothing unset: the same keys, and a model spelling out each
    default loads a default model's state dict strictly and computes the same logits, bit for bit."""
    from llmbricks.core.build import build_model
    from llmbricks.core.config import load_config

    base = {"vocab_size": 20, "context_length": 12, "emb_dim": 16, "n_heads": 4, "n_layers": 2}
    if family == "llama":
        base |= {"positional": "rope", "norm": "rmsnorm", "feedforward": "swiglu"}
    explicit = {**base, "block": {"name": "gpt", "placement": "pre"},
                "embedding": {"name": "token", "scale": "none"},
                "head": {"name": "lm", "softcap": None}}
    if family == "llama":
        explicit["norm"] = {"name": "rmsnorm", "offset": 0.0}
    torch.manual_seed(0)
    default = build_model(load_config({"model": base})).eval()
    torch.manual_seed(1)
    spelled = build_model(load_config({"model": explicit})).eval()
    keys = list(default.state_dict())
    norm_keys = ["weight", "bias"] if family == "gpt2" else ["weight"]
    ff_keys = (["up.weight", "up.bias", "down.weight", "down.bias"] if family == "gpt2"
               else ["gate.weight", "up.weight", "down.weight"])
    block = ([f"attn_norm.{k}" for k in norm_keys]
             + [f"attn.{p}_proj.weight" for p in "qkv"] + ["attn.out_proj.weight", "attn.out_proj.bias"]
             + [f"ff_norm.{k}" for k in norm_keys] + [f"ff.{k}" for k in ff_keys])
    assert [k for k in keys if k.startswith("blocks.0.")] == [f"blocks.0.{k}" for k in block]
    assert keys[0] == "embedding.table.weight" and keys[-1] == "head.proj.weight"
    assert list(spelled.state_dict()) == keys
    spelled.load_state_dict(default.state_dict(), strict=True)
    ids = torch.randint(0, 20, (2, 9))
    assert torch.equal(spelled(ids), default(ids))
    # and the pre-norm block is the equation it always was
    blk, x = default.blocks[0], torch.randn(2, 9, 16)
    pos = default.positional.context(torch.arange(9), torch.arange(9))
    h = x + blk.attn(blk.attn_norm(x), pos)
    assert torch.equal(blk(x, pos), h + blk.ff(blk.ff_norm(h)))


def test_relu_squared_is_the_square_of_relu():
    import torch.nn.functional as F

    from llmbricks.plugins.layers.feedforward import ReLUSquaredFeedForward

    torch.manual_seed(0)
    ff = ReLUSquaredFeedForward(ReLUSquaredFeedForward.Params(), DIMS)
    x = torch.randn(2, 5, DIMS.emb_dim)
    expected = ff.down(F.relu(ff.up(x)) ** 2)
    assert torch.equal(ff(x), expected)
    assert ff.up.out_features == 4 * DIMS.emb_dim and ff.residual_projections() == [ff.down]


def test_zero_residual_starts_every_block_as_the_identity():
    from llmbricks.core.build import build_model
    from llmbricks.core.config import load_config

    model_config = {"vocab_size": 20, "context_length": 12, "emb_dim": 16, "n_layers": 2,
                    "n_heads": 4, "dropout": 0.0, "feedforward": "relu2",
                    "arch": {"name": "gpt", "zero_residual": True}}
    torch.manual_seed(0)
    model = build_model(load_config({"model": model_config})).eval()
    for block in model.blocks:
        assert not block.attn.out_proj.weight.any() and not block.ff.down.weight.any()
        x = torch.randn(1, 6, 16)
        pos = model.positional.context(torch.arange(6), torch.arange(6))
        assert torch.equal(block(x, pos), x)  # x + 0 + 0
    assert model.embedding.weight.abs().sum() > 0  # everything else keeps its init
