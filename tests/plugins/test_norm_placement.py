"""The gpt block's norm placements (pre, post, sandwich) against their equations and the layers
of transformers' OLMo 2 and Gemma 2; whole models with each placement train, take LoRA and
freeze by policy."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from llmbricks.core.build import build_model
from llmbricks.core.component import Dims
from llmbricks.core.config import load_config
from llmbricks.core.registry import Registry
from llmbricks.core.train.trainable import apply_trainable

REG = Registry()
DIMS = Dims(vocab_size=40, context_length=16, emb_dim=16, n_heads=4, n_kv_heads=4, n_layers=2,
            dropout=0.0)
PLACEMENTS = ("pre", "post", "sandwich")
NORM_NAMES = {
    "pre": ["attn_norm", "ff_norm"],
    "post": ["attn_post_norm", "ff_post_norm"],
    "sandwich": ["attn_norm", "attn_post_norm", "ff_norm", "ff_post_norm"],
}


def block(placement: str, norm: str | dict = "rmsnorm", feedforward: str | dict = "swiglu",
          seed: int = 0) -> nn.Module:
    """A gpt block whose norms have random weights, so a misplaced norm cannot hide."""
    torch.manual_seed(seed)
    blk = REG.build("block", {"name": "gpt", "placement": placement}, dims=DIMS,
                    attention=lambda: REG.build("attention", "sdpa", dims=DIMS),
                    norm=lambda: REG.build("norm", norm, dims=DIMS),
                    feedforward=lambda: REG.build("feedforward", feedforward, dims=DIMS)).eval()
    with torch.no_grad():
        for name in NORM_NAMES[placement]:
            getattr(blk, name).weight.normal_(0.0, 0.5)
    return blk


def positions(t: int):
    positional = REG.build("positional", "rope", dims=DIMS)
    return positional.context(torch.arange(t), torch.arange(t))


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_each_placement_has_only_its_norms(placement):
    blk = block(placement)
    norms = [n for n, m in blk.named_children() if n.endswith("norm")]
    assert norms == NORM_NAMES[placement]
    for absent in {"attn_norm", "ff_norm", "attn_post_norm", "ff_post_norm"} - set(norms):
        assert getattr(blk, absent) is None
    assert [k for k in blk.state_dict() if "norm" in k] == [f"{n}.weight" for n in norms]


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_each_placement_is_its_equation(placement):
    blk, x, pos = block(placement), torch.randn(2, 7, 16), positions(7)

    def pre(name: str, h: Tensor) -> Tensor:
        return getattr(blk, name)(h) if placement in ("pre", "sandwich") else h

    def post(name: str, h: Tensor) -> Tensor:
        return getattr(blk, name)(h) if placement in ("post", "sandwich") else h

    h = x + post("attn_post_norm", blk.attn(pre("attn_norm", x), pos))
    expected = h + post("ff_post_norm", blk.ff(pre("ff_norm", h)))
    torch.testing.assert_close(blk(x, pos), expected, atol=0, rtol=0)
    if placement == "post":  # written out: x + n2(attn(x)), then x + n4(ff(x))
        h = x + blk.attn_post_norm(blk.attn(x, pos))
        torch.testing.assert_close(blk(x, pos), h + blk.ff_post_norm(blk.ff(h)), atol=0, rtol=0)


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_dropout_falls_on_the_branch_after_its_post_norm(placement):
    drop_dims = Dims(**{**DIMS.__dict__, "dropout": 0.5})
    torch.manual_seed(0)
    blk = REG.build("block", {"name": "gpt", "placement": placement}, dims=drop_dims,
                    attention=lambda: REG.build("attention", "mha", dims=DIMS),
                    norm=lambda: REG.build("norm", "rmsnorm", dims=DIMS),
                    feedforward=lambda: REG.build("feedforward", "swiglu", dims=DIMS)).train()
    x, pos = torch.randn(1, 5, 16), positions(5)
    branch = blk.attn(blk.attn_norm(x) if blk.attn_norm is not None else x, pos)
    if blk.attn_post_norm is not None:
        branch = blk.attn_post_norm(branch)
    torch.manual_seed(7)
    mask = F.dropout(torch.ones_like(x), 0.5)  # the first dropout draw inside the block
    blk.ff = nn.Identity()  # so the second branch adds exactly its (dropped) input again
    blk.ff_post_norm = None
    blk.ff_norm = None
    torch.manual_seed(7)
    out = blk(x, pos)
    h = x + mask * branch
    torch.manual_seed(7)
    F.dropout(torch.ones_like(x), 0.5)
    torch.testing.assert_close(out, h + F.dropout(h, 0.5), atol=1e-6, rtol=1e-5)


# --- against transformers' decoder layers: the same norms wired the same way ------------------


class _AttentionStub(nn.Module):
    """Stands in for a transformers attention: our attention, returned as (output, weights)."""

    def __init__(self, attention: nn.Module, pos) -> None:
        super().__init__()
        self.attention, self.pos = attention, pos

    def forward(self, hidden_states: Tensor, **_: object) -> tuple[Tensor, None]:
        return self.attention(hidden_states, self.pos), None


def test_post_is_olmo2s_decoder_layer():
    """transformers' Olmo2DecoderLayer.forward: h = x + post_attention_layernorm(attn(x)),
    out = h + post_feedforward_layernorm(mlp(h)); Olmo2RMSNorm is rmsnorm (offset 0)."""
    from transformers import Olmo2Config
    from transformers.models.olmo2.modeling_olmo2 import Olmo2DecoderLayer

    blk = block("post", norm={"name": "rmsnorm", "eps": 1e-6})
    config = Olmo2Config(hidden_size=16, intermediate_size=64, num_attention_heads=4,
                         num_key_value_heads=4, rms_norm_eps=1e-6, vocab_size=40)
    hf = Olmo2DecoderLayer(config, layer_idx=0).eval()
    x, pos = torch.randn(2, 7, 16), positions(7)
    hf.self_attn = _AttentionStub(blk.attn, pos)  # the norm wiring is what is compared
    hf.mlp = blk.ff
    with torch.no_grad():
        hf.post_attention_layernorm.weight.copy_(blk.attn_post_norm.weight)
        hf.post_feedforward_layernorm.weight.copy_(blk.ff_post_norm.weight)
    torch.testing.assert_close(blk(x, pos), hf(x), atol=1e-6, rtol=1e-5)


def test_sandwich_with_gemma_norms_and_geglu_is_gemma2s_decoder_layer():
    """Gemma2DecoderLayer.forward: input_layernorm -> attn -> post_attention_layernorm -> +x,
    pre_feedforward_layernorm -> mlp -> post_feedforward_layernorm -> +h; Gemma2RMSNorm is
    rmsnorm with offset 1, Gemma2MLP (gelu_pytorch_tanh) is geglu."""
    from transformers import Gemma2Config
    from transformers.models.gemma2.modeling_gemma2 import Gemma2DecoderLayer

    blk = block("sandwich", norm={"name": "rmsnorm", "eps": 1e-6, "offset": 1.0},
                feedforward={"name": "geglu", "hidden": 48})
    config = Gemma2Config(hidden_size=16, intermediate_size=48, num_attention_heads=4,
                          num_key_value_heads=4, head_dim=4, rms_norm_eps=1e-6, vocab_size=40,
                          hidden_activation="gelu_pytorch_tanh")
    hf = Gemma2DecoderLayer(config, layer_idx=0).eval()
    x, pos = torch.randn(2, 7, 16), positions(7)
    hf.self_attn = _AttentionStub(blk.attn, pos)
    pairs = {"input_layernorm": "attn_norm", "post_attention_layernorm": "attn_post_norm",
             "pre_feedforward_layernorm": "ff_norm", "post_feedforward_layernorm": "ff_post_norm"}
    with torch.no_grad():
        for theirs, ours in pairs.items():
            getattr(hf, theirs).weight.copy_(getattr(blk, ours).weight)
        for theirs, ours in (("gate_proj", "gate"), ("up_proj", "up"), ("down_proj", "down")):
            getattr(hf.mlp, theirs).weight.copy_(getattr(blk.ff, ours).weight)
    torch.testing.assert_close(blk(x, pos), hf(x), atol=1e-6, rtol=1e-5)


def test_offset_rmsnorm_is_gemmas_in_bf16():
    from transformers.models.gemma2.modeling_gemma2 import Gemma2RMSNorm

    ours = REG.build("norm", {"name": "rmsnorm", "offset": 1.0}, dims=DIMS)
    theirs = Gemma2RMSNorm(16, eps=1e-6)
    with torch.no_grad():
        theirs.weight.normal_()
        ours.weight.copy_(theirs.weight)
    x = torch.randn(3, 5, 16) * 4
    torch.testing.assert_close(ours(x), theirs(x), atol=1e-6, rtol=1e-5)
    ours, theirs, x = ours.to(torch.bfloat16), theirs.to(torch.bfloat16), x.to(torch.bfloat16)
    torch.testing.assert_close(ours(x), theirs(x), atol=0, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_sqrt_dim_embedding_is_gemmas_scaled_embedding(dtype):
    from transformers.models.gemma2.modeling_gemma2 import Gemma2TextScaledWordEmbedding

    dims = Dims(**{**DIMS.__dict__, "emb_dim": 3072})
    ours = REG.build("embedding", {"name": "token", "scale": "sqrt_dim"}, dims=dims)
    theirs = Gemma2TextScaledWordEmbedding(40, 3072, padding_idx=0, embed_scale=3072**0.5)
    with torch.no_grad():
        theirs.weight.copy_(ours.weight)
    ours, theirs = ours.to(dtype), theirs.to(dtype)
    ids = torch.randint(0, 40, (2, 9))
    assert torch.equal(ours(ids), theirs(ids))


# --- whole models -----------------------------------------------------------------------------

GEMMA_LIKE = {"embedding": {"name": "token", "scale": "sqrt_dim"},
              "norm": {"name": "rmsnorm", "offset": 1.0}, "feedforward": "geglu",
              "head": {"name": "lm", "softcap": 30.0}}


def tiny(placement: str, **model) -> nn.Module:
    torch.manual_seed(0)
    return build_model(load_config({"model": {
        "vocab_size": 40, "context_length": 16, "emb_dim": 16, "n_layers": 2, "n_heads": 4,
        "dropout": 0.0, "positional": "rope", "norm": "rmsnorm", "feedforward": "swiglu",
        "block": {"name": "gpt", "placement": placement}, **model}}))


def one_step(model: nn.Module) -> float:
    ids = torch.randint(0, 40, (2, 12), generator=torch.Generator().manual_seed(1))
    trainable = [p for p in model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in trainable]
    optimizer = torch.optim.AdamW(trainable, lr=1e-2)
    model.train()
    loss = F.cross_entropy(model(ids[:, :-1]).flatten(0, 1), ids[:, 1:].flatten())
    loss.backward()
    optimizer.step()
    assert all(not torch.equal(b, p) for b, p in zip(before, trainable, strict=True))
    return loss.item()


@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("family", ["llama-like", "gemma-like"])
def test_a_model_with_each_placement_trains_a_step(placement, family):
    model = tiny(placement, **(GEMMA_LIKE if family == "gemma-like" else {}))
    names = [n for n, _ in model.named_parameters() if n.startswith("blocks.1.") and "norm" in n]
    assert names == [f"blocks.1.{n}.weight" for n in NORM_NAMES[placement]]
    loss = one_step(model)
    assert torch.isfinite(torch.tensor(loss)) and 2.0 < loss < 6.0  # about ln(40) = 3.7


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_lora_adapts_every_placement(placement):
    plain = tiny(placement).eval()
    adapted = tiny(placement, adapters=[{"name": "lora", "r": 2}]).eval()
    ids = torch.randint(0, 40, (1, 8))
    assert torch.equal(plain(ids), adapted(ids))  # B = 0: the adapted model computes the same
    wrapped = {n.rsplit(".", 1)[0] for n, _ in adapted.named_parameters() if n.endswith("lora_A")}
    assert wrapped == {f"blocks.{i}.{layer}" for i in range(2)
                       for layer in ("attn.q_proj", "attn.k_proj", "attn.v_proj",
                                     "attn.out_proj", "ff.gate", "ff.up", "ff.down")}
    trained = {n for n, p in adapted.named_parameters() if p.requires_grad}
    assert trained and all(n.endswith(("lora_A", "lora_B")) for n in trained)
    assert torch.isfinite(torch.tensor(one_step(adapted)))


@pytest.mark.parametrize("placement", ["post", "sandwich"])
def test_last_block_trains_the_last_blocks_post_norms_too(placement):
    model = tiny(placement, head={"name": "lm", "tie_weights": False})
    apply_trainable(model, "last_block")
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    last = {n for n, _ in model.named_parameters() if n.startswith("blocks.1.")}
    assert trained == last | {"norm.weight", "head.proj.weight"}
    assert {f"blocks.1.{n}.weight" for n in NORM_NAMES[placement]} <= trained
    assert torch.isfinite(torch.tensor(one_step(model)))
