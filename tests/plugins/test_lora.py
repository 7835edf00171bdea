"""The LoRA adapter: exact at apply time, only A and B train, merges back exactly, the book's count."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from pydantic import ValidationError
from torch import nn
from torch.nn import functional as F

from llmbricks.core.build import build_model
from llmbricks.core.config import load_config
from llmbricks.core.errors import CheckpointError, ConfigError
from llmbricks.core.registry import get_registry
from llmbricks.plugins.adapters.lora import (
    LoRA,
    LoRALinear,
    load_lora_state_dict,
    lora_layers,
    lora_state_dict,
    trainable_parameters,
)

VOCAB = 40

# Three attention set-ups: the reference (mha), the fused one (sdpa), and grouped-query attention,
# whose k/v projections are [n_kv_heads * head_dim, D] = [16, 32], not square.
ATTENTIONS = {
    "mha": "mha",
    "sdpa": "sdpa",
    "sdpa-gqa": {"name": "sdpa", "n_kv_heads": 2},
}


def tiny_model(attention="sdpa", seed: int = 0, **overrides) -> nn.Module:
    """A 2-layer model with an untied head (so targets ["*"] may wrap it) and no dropout."""
    torch.manual_seed(seed)
    model = {"vocab_size": VOCAB, "context_length": 16, "emb_dim": 32, "n_layers": 2,
             "n_heads": 4, "dropout": 0.0, "attention": attention,
             "head": {"name": "lm", "tie_weights": False}, **overrides}
    return build_model(load_config({"model": model})).eval()


def adapter(**params) -> LoRA:
    return LoRA(LoRA.Params(**params))


def ids(seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, 12), generator=torch.Generator().manual_seed(seed))


def train_steps(model: nn.Module, steps: int = 4, lr: float = 1e-2) -> None:
    """A few AdamW steps on a next-token loss, so A and B move away from their init."""
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=0.0)
    x = ids(2)
    for _ in range(steps):
        logits = model(x[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


def lora_names(model: nn.Module) -> set[str]:
    return {n for n, _ in model.named_parameters() if n.endswith((".lora_A", ".lora_B"))}


# --- apply ------------------------------------------------------------------------------------


@pytest.mark.parametrize("attention", ATTENTIONS.values(), ids=ATTENTIONS.keys())
def test_output_is_unchanged_right_after_apply(attention):
    model = tiny_model(attention)
    x = ids()
    with torch.no_grad():
        before = model(x)
        adapter().apply(model)
        after = model(x)
    assert lora_layers(model), "nothing was wrapped"
    torch.testing.assert_close(after, before, atol=0, rtol=0)  # B = 0: B A x = 0 exactly


@pytest.mark.parametrize("attention", ATTENTIONS.values(), ids=ATTENTIONS.keys())
def test_default_targets_are_the_attention_and_feedforward_projections(attention):
    model = tiny_model(attention, feedforward="swiglu")
    adapter().apply(model)
    expected = {f"blocks.{i}.{name}" for i in range(2) for name in
                ("attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.out_proj",
                 "ff.gate", "ff.up", "ff.down")}
    assert set(lora_layers(model)) == expected
    assert isinstance(model.head.proj, nn.Linear)  # the head is not a default target


def test_gqa_key_value_projections_get_their_own_shapes():
    model = tiny_model(ATTENTIONS["sdpa-gqa"])
    adapter(r=4).apply(model)
    k = model.blocks[0].attn.k_proj
    assert (k.lora_A.shape, k.lora_B.shape) == ((4, 32), (16, 4))  # A: [r, in], B: [out, r]
    q = model.blocks[0].attn.q_proj
    assert (q.lora_A.shape, q.lora_B.shape) == ((4, 32), (32, 4))


@pytest.mark.parametrize("attention", ATTENTIONS.values(), ids=ATTENTIONS.keys())
def test_only_a_and_b_train_and_the_base_stays_put(attention):
    model = tiny_model(attention)
    adapter().apply(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == lora_names(model) and trainable
    base = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    lora = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    # Train with an optimizer over *all* parameters: frozen ones get no gradient, so no update.
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    x = ids(2)
    for _ in range(2):  # B moves on step 1 (A's gradient is B^T ... = 0 then), A on step 2
        optimizer.zero_grad()
        F.cross_entropy(model(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten()).backward()
        optimizer.step()
    for name, p in model.named_parameters():
        if name in base:
            assert torch.equal(p, base[name]), f"{name} changed although frozen"
        else:
            assert not torch.equal(p, lora[name]), f"{name} did not train"


def test_freeze_base_false_leaves_the_base_trainable():
    model = tiny_model()
    total = trainable_parameters(model)
    adapter(freeze_base=False).apply(model)
    added = sum(t.numel() for t in lora_state_dict(model).values())
    assert trainable_parameters(model) == total + added


def test_lora_linear_is_the_equation():
    torch.manual_seed(0)
    base = nn.Linear(6, 5)
    layer = LoRALinear(base, r=3, alpha=6.0)
    bound = 1 / math.sqrt(6)  # Kaiming-uniform with a = sqrt(5): U(-1/sqrt(in), 1/sqrt(in))
    assert layer.lora_A.abs().max() <= bound and layer.lora_A.abs().max() > bound / 2
    assert torch.count_nonzero(layer.lora_B) == 0
    assert layer.weight is base.weight and layer.bias is base.bias  # the same Parameters
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(4, 6)
    expected = x @ base.weight.T + base.bias + (6.0 / 3) * (x @ layer.lora_A.T @ layer.lora_B.T)
    torch.testing.assert_close(layer(x), expected, atol=1e-6, rtol=1e-5)


def test_applying_twice_is_a_no_op_and_other_settings_are_an_error():
    model = tiny_model()
    adapter().apply(model)
    layers = lora_layers(model)
    adapter().apply(model)
    assert lora_layers(model) == layers  # same wrapper objects, none nested
    assert all(not isinstance(m, LoRALinear) for layer in layers.values() for m in layer.children())
    with pytest.raises(ConfigError, match=r"already wrapped with r=8.*not r=4"):
        adapter(r=4).apply(model)


def test_a_second_apply_can_add_more_layers():
    model = tiny_model()
    adapter(targets=["*.attn.q_proj"]).apply(model)
    adapter(targets=["*.attn.q_proj", "*.attn.v_proj"]).apply(model)
    assert set(lora_layers(model)) == {f"blocks.{i}.attn.{p}" for i in range(2)
                                       for p in ("q_proj", "v_proj")}


def test_unmatched_globs_raise_a_one_line_config_error():
    model = tiny_model()
    with pytest.raises(ConfigError) as info:
        adapter(targets=["*.attention.query", "*.mlp.*"]).apply(model)
    message = str(info.value)
    assert "\n" not in message
    assert "'*.attention.query'" in message and "'*.mlp.*'" in message
    assert "blocks.0.attn.q_proj" in message  # shows what it could have matched
    assert not lora_layers(model)


def test_params_are_validated():
    assert LoRA.Params() == LoRA.Params(r=8, alpha=16.0, dropout=0.0,
                                        targets=["*.attn.*_proj", "*.ff.*"], freeze_base=True)
    for bad in ({"r": 0}, {"dropout": 1.0}, {"dropout": -0.1}, {"alpha": 0}, {"targets": []},
                {"rank": 4}):
        with pytest.raises(ValidationError):
            LoRA.Params(**bad)


# --- the book's number ------------------------------------------------------------------------


def test_the_books_trainable_count_for_gpt2_small_with_a_two_class_head():
    # Appendix E: GPT-2 small, its output layer replaced by a 2-class Linear(768, 2), LoRA with
    # r = 16 on every Linear layer (the new head included) -> 2,666,528 trainable parameters.
    config = load_config({"model": {"preset": "gpt2-small", "vocab_size": 50257}})
    model = build_model(config, device="meta")
    with torch.device("meta"):
        head = get_registry().build("head", {"name": "lm", "tie_weights": False},
                                    dims=dataclasses.replace(model.dims, vocab_size=2))
    model.replace_head(head)
    assert tuple(model.head.proj.weight.shape) == (2, 768)
    adapter(r=16, alpha=16, targets=["*"]).apply(model)
    assert len(lora_layers(model)) == 12 * 6 + 1
    assert trainable_parameters(model) == 2_666_528


# --- merge ------------------------------------------------------------------------------------


@pytest.mark.parametrize("attention", ATTENTIONS.values(), ids=ATTENTIONS.keys())
def test_merge_gives_the_adapted_logits_and_the_original_state_dict(attention):
    model = tiny_model(attention)
    original_keys = list(model.state_dict())
    plain = type(model.blocks[0].attn.q_proj)  # the model's own linear layer (an nn.Linear)
    lora = adapter(r=4, alpha=8, targets=["*"])
    lora.apply(model)
    train_steps(model)
    assert all(layer.lora_B.abs().max() > 0 for layer in lora_layers(model).values())
    x = ids()
    with torch.no_grad():
        adapted = model(x)
        lora.merge(model)
        merged = model(x)
    torch.testing.assert_close(merged, adapted, atol=1e-5, rtol=0)
    assert not lora_layers(model)
    assert list(model.state_dict()) == original_keys
    assert type(model.blocks[0].attn.q_proj) is plain and issubclass(plain, nn.Linear)
    # ... so it loads into a plain model like any checkpoint, and computes the same.
    fresh = tiny_model(attention, seed=5)
    fresh.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), adapted, atol=1e-5, rtol=0)


def test_a_tied_head_is_refused_before_training():
    # Merging B A into a table shared with the embedding would change the embedding too.
    model = tiny_model(head={"name": "lm", "tie_weights": True})
    with pytest.raises(ConfigError, match=r"head\.proj\.weight is shared with embedding\.table\.weight"
                       r".*tie_weights: false"):
        adapter(targets=["*"]).apply(model)
    assert not lora_layers(model)
    adapter().apply(model)  # the default targets leave the head alone


# --- saving the adapter apart -----------------------------------------------------------------


def test_base_weights_keep_their_names_and_load_into_an_adapted_model():
    base_state = tiny_model().state_dict()
    model = tiny_model(seed=3)
    adapter().apply(model)
    result = model.load_state_dict(base_state, strict=False)
    assert not result.unexpected_keys
    assert set(result.missing_keys) == set(lora_state_dict(model)) == lora_names(model)


@pytest.mark.parametrize("attention", ATTENTIONS.values(), ids=ATTENTIONS.keys())
def test_lora_state_dict_round_trip(attention):
    model = tiny_model(attention)
    base_state = {k: v.clone() for k, v in model.state_dict().items()}
    lora = adapter(r=4)
    lora.apply(model)
    train_steps(model)
    saved = {k: v.clone() for k, v in lora_state_dict(model).items()}
    assert set(saved) == lora_names(model)
    assert not any(k.endswith((".weight", ".bias")) for k in saved)
    # A new process: build, load the base weights, apply the same adapter, load its weights.
    fresh = tiny_model(attention, seed=9)
    fresh.load_state_dict(base_state)
    lora.apply(fresh)
    lora.load_state_dict(fresh, saved)
    x = ids()
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), model(x), atol=0, rtol=0)


def test_loading_a_mismatched_lora_state_names_the_problem():
    model = tiny_model()
    adapter(r=4).apply(model)
    state = lora_state_dict(model)
    other_targets = tiny_model()
    adapter(r=4, targets=["*.attn.*_proj"]).apply(other_targets)
    with pytest.raises(CheckpointError, match=r"unexpected blocks\.0\.ff\.up\.lora_A"):
        load_lora_state_dict(other_targets, state)
    other_rank = tiny_model()
    adapter(r=2).apply(other_rank)
    before = {k: v.clone() for k, v in lora_state_dict(other_rank).items()}
    with pytest.raises(CheckpointError, match=r"shape \[4, 32\] in the state but \[2, 32\]"):
        load_lora_state_dict(other_rank, state)
    assert all(torch.equal(v, before[k]) for k, v in lora_state_dict(other_rank).items())
    with pytest.raises(CheckpointError, match="no LoRA layers"):
        load_lora_state_dict(tiny_model(), state)
    missing = dict(state)
    missing.pop("blocks.1.ff.down.lora_B")
    with pytest.raises(CheckpointError, match=r"missing blocks\.1\.ff\.down\.lora_B"):
        load_lora_state_dict(model, missing)


# --- dropout ----------------------------------------------------------------------------------


def test_dropout_acts_in_train_mode_only():
    model = tiny_model()
    adapter(dropout=0.5).apply(model)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_B.normal_()  # a non-zero update, so dropping its input shows
    x = ids()
    with torch.no_grad():
        evaluated = model.eval()(x)
        assert torch.equal(model(x), evaluated)  # deterministic in eval mode
        reference = tiny_model()
        adapter(dropout=0.0).apply(reference)
        reference.load_state_dict(model.state_dict())
        torch.testing.assert_close(evaluated, reference(x), atol=0, rtol=0)  # = no dropout
        model.train()
        torch.manual_seed(0)
        first = model(x)
        second = model(x)
    assert not torch.allclose(first, second)
    assert not torch.allclose(first, evaluated)


# --- the registry -----------------------------------------------------------------------------


def test_registered_through_the_hook(registry_with):
    import llmbricks.plugins.adapters as adapters_plugin
    from llmbricks.testing.conformance import check_component

    registry = registry_with({"adapters": adapters_plugin}, entry_points=False)
    built = registry.build("adapter", {"name": "lora", "r": 4, "targets": ["*"]})
    assert isinstance(built, LoRA) and built.params.r == 4
    assert check_component("adapter", "lora", registry=registry)


class BookLoRALayer(nn.Module):
    """The book's appendix E ``LoRALayer``, written out as the oracle: ``alpha * (x @ A @ B)``."""

    def __init__(self, A: torch.Tensor, B: torch.Tensor, alpha: float) -> None:
        super().__init__()
        self.A, self.B, self.alpha = A, B, alpha   # A: [in, r], B: [r, out]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.alpha * (x @ self.A @ self.B)


def wrapped_with_random_update(scaling: str | None, r: int = 4, alpha: float = 8.0):
    torch.manual_seed(3)
    base = nn.Linear(6, 5)
    options = {} if scaling is None else {"scaling": scaling}
    layer = LoRALinear(base, r=r, alpha=alpha, **options)
    with torch.no_grad():
        layer.lora_A.normal_()
        layer.lora_B.normal_()   # B starts at zero; a trained one is not
    return base, layer


@pytest.mark.parametrize("scaling,scale", [(None, 8.0 / 4), ("alpha_over_r", 8.0 / 4),
                                           ("alpha", 8.0), ("rslora", 8.0 / 2)])
def test_each_scaling_scales_the_update_as_documented(scaling, scale):
    base, layer = wrapped_with_random_update(scaling)
    x = torch.randn(3, 6)
    with torch.no_grad():
        update = layer(x) - base(x)
        expected = scale * (x @ layer.lora_A.T @ layer.lora_B.T)
    torch.testing.assert_close(update, expected)
    assert layer.scale == scale


def test_scaling_alpha_reproduces_the_books_lora_layer():
    base, layer = wrapped_with_random_update("alpha", r=4, alpha=16.0)
    book = BookLoRALayer(layer.lora_A.detach().T, layer.lora_B.detach().T, alpha=16.0)
    x = torch.randn(2, 7, 6)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), base(x) + book(x))
        # ...and merging folds the same update into W.
        torch.testing.assert_close(layer.merged()(x), base(x) + book(x), atol=1e-5, rtol=1e-5)


def test_the_default_scaling_is_unchanged_and_a_config_can_name_another():
    assert LoRA.Params().scaling == "alpha_over_r"
    model = tiny_model()
    adapter(r=4, alpha=8, scaling="rslora").apply(model)
    layer = next(iter(lora_layers(model).values()))
    assert (layer.scaling, layer.scale) == ("rslora", 8 / math.sqrt(4))
    with pytest.raises(ValidationError, match="scaling"):
        LoRA.Params(scaling="book")
    with pytest.raises(ConfigError, match="scaling=rslora.*scaling=alpha"):
        adapter(r=4, alpha=8, scaling="alpha").apply(model)
