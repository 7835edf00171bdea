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
