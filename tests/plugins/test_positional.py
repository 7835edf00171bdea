"""Positional encodings: the conformance kit, closed forms, and the properties each one promises."""

from __future__ import annotations

import math

import pytest
import torch

from llmbricks.core.build import build_model
from llmbricks.core.component import Dims
from llmbricks.core.config import load_config
from llmbricks.core.errors import ConfigError
from llmbricks.core.interfaces import PositionContext
from llmbricks.core.registry import Registry
from llmbricks.plugins.positional.alibi import alibi_slopes
from llmbricks.plugins.positional.rope import RotaryPositional
from llmbricks.plugins.positional.t5_bias import t5_bucket
from llmbricks.testing import check_component

REGISTRY = Registry()
NEW_KINDS = ["sinusoidal", "rope", "alibi", "t5"]
RELATIVE_KINDS = ["rope", "alibi", "t5"]
TINY = {"vocab_size": 37, "context_length": 16, "emb_dim": 32, "n_layers": 2, "n_heads": 4,
        "dropout": 0.0}


def dims(**changes: int) -> Dims:
    base = {"vocab_size": 37, "context_length": 16, "emb_dim": 32, "n_heads": 4, "n_kv_heads": 4,
            "n_layers": 2, "dropout": 0.0}
    return Dims(**{**base, **changes})


def positional(name: str, d: Dims | None = None, **params):
    torch.manual_seed(0)
    return REGISTRY.build("positional", {"name": name, **params}, dims=d or dims()).eval()


def tiny_model(**model):
    torch.manual_seed(0)
    return build_model(load_config({"model": {**TINY, **model}}, registry=REGISTRY), REGISTRY).eval()


# --- the conformance kit ------------------------------------------------------------------------


@pytest.mark.parametrize("name", NEW_KINDS)
def test_registered_and_conforms(name):
    passed = set(check_component("positional", name, REGISTRY))
    assert {"summary", "causal", "cache equivalence", "state_dict round trip",
            "seeded determinism"} <= passed


@pytest.mark.parametrize("name,params", [
    ("rope", {"rotary_fraction": 0.5, "theta": 500000.0}),
    ("t5", {"num_buckets": 8, "max_distance": 10}),
])
def test_conforms_with_other_params(name, params):
    assert "cache equivalence" in check_component("positional", name, REGISTRY, params=params)


def test_absolute_and_none_still_registered():
    assert {"absolute", "none", *NEW_KINDS} <= set(REGISTRY.names("positional"))


@pytest.mark.parametrize("name", ["sinusoidal", "rope", "alibi"])
def test_fixed_kinds_hold_no_state(name):
    module = positional(name)
    assert list(module.parameters()) == []
    assert module.state_dict() == {}


@pytest.mark.parametrize("name", NEW_KINDS)
def test_documented_to_extrapolate(name):
    module = positional(name)
    assert module.positions_limit() is None
    assert type(module).extrapolates is True
    assert type(module).positions_limit.__doc__


# --- sinusoidal ---------------------------------------------------------------------------------


@pytest.mark.parametrize("emb_dim", [6, 7])
def test_sinusoidal_matches_closed_form(emb_dim):
    base = 10000.0
    module = positional("sinusoidal", dims(emb_dim=emb_dim, n_heads=1, n_kv_heads=1), scale=1.0)
    positions = [0, 1, 2, 5, 40]
    x = torch.zeros(1, len(positions), emb_dim)
    got = module.embed(x, torch.tensor(positions))[0]
    for row, p in enumerate(positions):
        for c in range(emb_dim):
            i = c // 2
            angle = p / base ** (2 * i / emb_dim)  # PE[p, 2i] = sin, PE[p, 2i+1] = cos
            want = math.sin(angle) if c % 2 == 0 else math.cos(angle)
            assert got[row, c].item() == pytest.approx(want, abs=1e-5), (p, c)


def test_sinusoidal_base_is_a_param():
    module = positional("sinusoidal", dims(emb_dim=4, n_heads=1, n_kv_heads=1), base=100.0,
                        scale=1.0)
    got = module.embed(torch.zeros(1, 1, 4), torch.tensor([3]))[0, 0]
    want = [math.sin(3), math.cos(3), math.sin(3 / 10), math.cos(3 / 10)]
    assert got.tolist() == pytest.approx(want, abs=1e-6)


def test_sinusoidal_is_scaled_by_one_over_sqrt_dim_by_default():
    # The paper adds PE to sqrt(D) * x; x + PE / sqrt(D) keeps that ratio at the embeddings' scale.
    positions = torch.arange(5)
    x = torch.zeros(1, 5, 16)
    raw = positional("sinusoidal", dims(emb_dim=16, n_heads=1, n_kv_heads=1), scale=1.0)
    default = positional("sinusoidal", dims(emb_dim=16, n_heads=1, n_kv_heads=1))
    assert torch.allclose(default.embed(x, positions), raw.embed(x, positions) / 4.0, atol=1e-7)


def test_sinusoidal_adds_to_embeddings_and_keeps_dtype():
    module = positional("sinusoidal")
    x = torch.randn(2, 3, 32)
    positions = torch.arange(3)
    assert torch.allclose(module.embed(x, positions) - x, module.embed(torch.zeros_like(x), positions),
                          atol=1e-6)
    assert module.embed(x.to(torch.bfloat16), positions).dtype == torch.bfloat16


# --- translation invariance ---------------------------------------------------------------------


def attention_weights(name: str, x: torch.Tensor, positions: torch.Tensor, d: Dims) -> torch.Tensor:
    """Softmax weights of a real ``mha`` layer, read where it applies dropout to them."""
    pos_module = positional(name, d)
    torch.manual_seed(1)
    attn = REGISTRY.build("attention", {"name": "mha", "n_kv_heads": d.n_kv_heads}, dims=d).eval()
    seen: list[torch.Tensor] = []
    handle = attn.dropout.register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0]))
    try:
        with torch.no_grad():
            attn(x, pos_module, pos_module.context(positions, positions))
    finally:
        handle.remove()
    return seen[0]


@pytest.mark.parametrize("name", RELATIVE_KINDS)
@pytest.mark.parametrize("kv_heads", [4, 2])
def test_shifting_positions_leaves_attention_weights_unchanged(name, kv_heads):
    d = dims(n_kv_heads=kv_heads)
    torch.manual_seed(2)
    x = torch.randn(2, 10, d.emb_dim)
    positions = torch.arange(10)
    near = attention_weights(name, x, positions, d)
    far = attention_weights(name, x, positions + 100, d)
    assert near.shape == (2, 4, 10, 10)
    assert torch.allclose(near, far, atol=1e-5)
    # ...and the positional encoding does matter: other spacings give other weights.
    assert not torch.allclose(near, attention_weights(name, x, positions * 3, d), atol=1e-3)


def test_absolute_positions_are_not_translation_invariant():
    """The control: the property above is not automatic."""
    model = tiny_model(positional="sinusoidal", attention="mha")
    ids = torch.randint(0, 37, (1, 8))
    with torch.no_grad():
        near = model(ids, positions=torch.arange(8))
        far = model(ids, positions=torch.arange(8) + 100)
    assert not torch.allclose(near, far, atol=1e-3)


# --- rope ---------------------------------------------------------------------------------------


def rotated(module: RotaryPositional, q: torch.Tensor, k: torch.Tensor, q_at: int, k_at: int):
    """Rotate q as if at position ``q_at`` and k as if at ``k_at``."""
    qr, _ = module.rotate(q, q, PositionContext(q=torch.tensor([q_at]), k=torch.tensor([q_at]),
                                                rotation=module.rotation(torch.tensor([q_at]))))
    _, kr = module.rotate(k, k, PositionContext(q=torch.tensor([k_at]), k=torch.tensor([k_at]),
                                                rotation=module.rotation(torch.tensor([k_at]))))
    return qr, kr


def test_rope_dot_product_depends_only_on_the_offset():
    module = positional("rope", dims(emb_dim=64, n_heads=4))
    torch.manual_seed(3)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)
    for m, n in [(5, 2), (9, 9), (3, 7)]:
        dots = []
        for shift in (0, 11, 250):
            qr, kr = rotated(module, q, k, m + shift, n + shift)
            dots.append((qr * kr).sum().item())
        assert dots == pytest.approx([dots[0]] * 3, abs=1e-4), (m, n)
    qr, kr = rotated(module, q, k, 5, 2)
    qr2, kr2 = rotated(module, q, k, 5, 3)
    assert (qr * kr).sum().item() != pytest.approx((qr2 * kr2).sum().item(), abs=1e-3)


def test_rope_rotates_pairs_in_the_rotate_half_layout():
    module = positional("rope", dims(emb_dim=4, n_heads=1, n_kv_heads=1), theta=100.0)
    x = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 1, 4)
    p = 3
    out, _ = rotated(module, x, x, p, p)
    # pairs (x0, x2) and (x1, x3) turn by p * theta^(-0/4) and p * theta^(-2/4)
    a0, a1 = p * 1.0, p / 10.0
    want = [1 * math.cos(a0) - 3 * math.sin(a0), 2 * math.cos(a1) - 4 * math.sin(a1),
            3 * math.cos(a0) + 1 * math.sin(a0), 4 * math.cos(a1) + 2 * math.sin(a1)]
    assert out.flatten().tolist() == pytest.approx(want, abs=1e-5)
    assert out.norm().item() == pytest.approx(x.norm().item(), rel=1e-6)  # a rotation


def test_rope_position_zero_is_the_identity():
    module = positional("rope")
    q, k = torch.randn(2, 4, 1, 8), torch.randn(2, 4, 1, 8)
    qr, kr = rotated(module, q, k, 0, 0)
    assert torch.equal(qr, q) and torch.equal(kr, k)


def test_rope_handles_gqa_head_counts():
    module = positional("rope")
    positions = torch.arange(5)
    pos = module.context(positions, positions)
    q, k = torch.randn(2, 4, 5, 8), torch.randn(2, 1, 5, 8)
    qr, kr = module.rotate(q, k, pos)
    assert qr.shape == q.shape and kr.shape == k.shape
    # each query head is rotated exactly as a lone key head with the same content would be
    _, q_head0 = module.rotate(q, q[:, :1], pos)
    assert torch.allclose(qr[:, :1], q_head0)


def test_rope_partial_rotary_passes_the_rest_through():
    module = positional("rope", rotary_fraction=0.5)  # head_dim 8: rotate 4, keep 4
    assert module.rotary_dim == 4
    positions = torch.arange(3, 9)
    q, k = torch.randn(2, 4, 6, 8), torch.randn(2, 4, 6, 8)
    qr, kr = module.rotate(q, k, module.context(positions, positions))
    assert torch.equal(qr[..., 4:], q[..., 4:]) and torch.equal(kr[..., 4:], k[..., 4:])
    assert not torch.allclose(qr[..., :4], q[..., :4])
    assert qr.shape == q.shape


@pytest.mark.parametrize("head_dim,fraction,rotated_dims", [(8, 0.5, 4), (8, 0.4, 2), (10, 0.5, 4),
                                                           (64, 0.25, 16), (8, 1.0, 8)])
def test_rope_rotary_dim_rounds_down_to_even(head_dim, fraction, rotated_dims):
    module = positional("rope", dims(emb_dim=head_dim * 2, n_heads=2, n_kv_heads=2),
                        rotary_fraction=fraction)
    assert module.rotary_dim == rotated_dims


@pytest.mark.parametrize("emb_dim,n_heads,fraction,message", [
    (32, 4, 0.2, "0 dims"),   # int(8 * 0.2) = 1 -> 0
    (28, 4, 1.0, "odd"),      # head_dim 7
])
def test_rope_check_rejects_impossible_heads(emb_dim, n_heads, fraction, message):
    cls = REGISTRY.get("positional", "rope")
    d = dims(emb_dim=emb_dim, n_heads=n_heads, n_kv_heads=n_heads)
    with pytest.raises(ValueError, match=message):
        cls.check(cls.Params(rotary_fraction=fraction), d)
    with pytest.raises(ConfigError, match=rf"model.positional: .*{message}"):
        load_config({"model": {**TINY, "emb_dim": emb_dim, "n_heads": n_heads,
                               "positional": {"name": "rope", "rotary_fraction": fraction}}},
                    registry=REGISTRY)


def test_rope_odd_head_dim_works_with_partial_rotary():
    cls = REGISTRY.get("positional", "rope")
    cls.check(cls.Params(rotary_fraction=0.5), dims(emb_dim=28, n_heads=4))  # rotates 2 of 7


@pytest.mark.parametrize("fraction", [0.0, 1.5])
def test_rope_fraction_range_is_validated(fraction):
    with pytest.raises(ConfigError, match="rotary_fraction"):
        load_config({"model": {**TINY, "positional": {"name": "rope", "rotary_fraction": fraction}}},
                    registry=REGISTRY)


# --- alibi --------------------------------------------------------------------------------------


def test_alibi_slopes_for_eight_heads():
    assert alibi_slopes(8) == [1 / 2, 1 / 4, 1 / 8, 1 / 16, 1 / 32, 1 / 64, 1 / 128, 1 / 256]


def test_alibi_slopes_for_twelve_heads():
    # the 8-head slopes, then every other 16-head slope (2^-0.5, 2^-1, 2^-1.5, ...): the 1st, 3rd...
    want = [2.0 ** -e for e in (1, 2, 3, 4, 5, 6, 7, 8, 0.5, 1.5, 2.5, 3.5)]
    assert alibi_slopes(12) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 6, 7, 16, 20, 32])
def test_alibi_slopes_any_head_count(n):
    slopes = alibi_slopes(n)
    assert len(slopes) == n and len(set(slopes)) == n
    assert all(0 < s < 1 for s in slopes)
    if n & (n - 1) == 0:  # geometric: start 2^(-8/n), same ratio, down to 2^-8
        assert slopes[0] == pytest.approx(2 ** (-8 / n))
        assert slopes[-1] == pytest.approx(2 ** -8)
        assert all(b / a == pytest.approx(slopes[0]) for a, b in zip(slopes, slopes[1:], strict=False))


def test_alibi_bias_is_the_scaled_distance():
    module = positional("alibi", dims(emb_dim=16, n_heads=2, n_kv_heads=2))
    q = torch.tensor([3, 4])
    k = torch.tensor([0, 1, 2, 3, 4])
    bias = module.bias(q, k)
    assert bias.shape == (2, 2, 5)
    slopes = alibi_slopes(2)  # 1/2, 1/4
    for h in range(2):
        for i, qi in enumerate(q.tolist()):
            for j, kj in enumerate(k.tolist()):
                want = -slopes[h] * (qi - kj) if kj <= qi else 0.0
                assert bias[h, i, j].item() == pytest.approx(want)
    assert torch.isfinite(bias).all()


# --- t5 -----------------------------------------------------------------------------------------


def test_t5_buckets_exact_then_log_spaced_then_clamped():
    n = torch.tensor([0, 1, 7, 15, 16, 20, 31, 32, 63, 64, 127, 128, 1000, 10**6])
    got = t5_bucket(n, num_buckets=32, max_distance=128).tolist()
    # 16 exact buckets; then 16 + floor(log(n/16) / log(8) * 16): 32 -> 16/3, 64 -> 32/3, 127 -> 15.9
    assert got == [0, 1, 7, 15, 16, 17, 21, 21, 26, 26, 31, 31, 31, 31]


def test_t5_buckets_small_table_and_future_keys():
    # 4 exact buckets (0..3), then 4 + floor(log(n/4) / log(10/4) * 4), last bucket 7
    n = torch.tensor([-5, -1, 0, 3, 4, 5, 6, 9, 10, 50])
    expected = [0, 0, 0, 3]
    for d in (4, 5, 6, 9):
        expected.append(4 + int(math.log(d / 4) / math.log(10 / 4) * 4))
    expected += [7, 7]
    assert t5_bucket(n, num_buckets=8, max_distance=10).tolist() == expected
    assert expected[4:8] == [4, 4, 5, 7]


def test_t5_buckets_are_monotonic_and_in_range():
    n = torch.arange(0, 500)
    buckets = t5_bucket(n, 32, 128)
    assert buckets.dtype == torch.long
    assert (buckets[1:] >= buckets[:-1]).all()
    assert buckets.min() == 0 and buckets.max() == 31
    assert set(buckets.tolist()) == set(range(32))  # every bucket is used


def test_t5_bucket_rejects_impossible_spacing():
    with pytest.raises(ValueError, match="max_distance"):
        t5_bucket(torch.arange(3), num_buckets=32, max_distance=16)
    with pytest.raises(ConfigError, match="model.positional: max_distance"):
        load_config({"model": {**TINY, "positional": {"name": "t5", "max_distance": 8}}},
                    registry=REGISTRY)


def test_t5_bias_reads_the_table():
    module = positional("t5", num_buckets=8, max_distance=10)
    positions = torch.arange(12)
    bias = module.bias(positions, positions)
    assert bias.shape == (4, 12, 12)
    buckets = t5_bucket(positions[:, None] - positions[None, :], 8, 10)
    for h in range(4):
        assert torch.equal(bias[h], module.table.weight[buckets, h])


@pytest.mark.parametrize("n_layers", [1, 3])
def test_t5_table_is_one_tensor_shared_by_all_layers(n_layers):
    model = tiny_model(positional="t5", n_layers=n_layers)
    tables = [(name, p) for name, p in model.named_parameters() if p.shape == (32, 4)]
    assert [name for name, _ in tables] == ["positional.table.weight"]
    assert not any("positional" in name for name, _ in model.blocks.named_parameters())
    t5_total = sum(p.numel() for p in model.parameters())
    baseline_total = sum(p.numel() for p in tiny_model(positional="none", n_layers=n_layers).parameters())
    assert t5_total - baseline_total == 32 * 4  # the same one table whatever n_layers is


def test_t5_table_gets_gradients():
    model = tiny_model(positional="t5")
    ids = torch.randint(0, 37, (2, 10))
    model(ids).sum().backward()
    assert model.positional.table.weight.grad is not None
    assert model.positional.table.weight.grad.abs().sum() > 0


# --- whole models -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NEW_KINDS)
def test_models_accept_sequences_past_the_context(name):
    model = tiny_model(positional=name)
    ids = torch.randint(0, 37, (2, 40))  # context_length is 16
    with torch.no_grad():
        logits = model(ids)
    assert logits.shape == (2, 40, 37)
    assert torch.isfinite(logits).all()


def test_absolute_refuses_sequences_past_the_context():
    model = tiny_model(positional="absolute")
    with pytest.raises(ValueError, match="past the 16 positions of positional 'absolute'"):
        model(torch.randint(0, 37, (2, 40)))


@pytest.mark.parametrize("name", NEW_KINDS)
def test_cache_past_the_context(name):
    """Generation can run past context_length with the cache, matching one full pass."""
    model = tiny_model(positional=name)
    ids = torch.randint(0, 37, (1, 24))
    with torch.no_grad():
        full = model(ids)
        cache = model.new_cache(1, 24)
        steps = [model(ids[:, :10], cache=cache)]
        steps += [model(ids[:, t:t + 1], cache=cache) for t in range(10, 24)]
    assert torch.allclose(torch.cat(steps, dim=1), full, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", NEW_KINDS)
@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_fused_attention_matches_the_reference(name, kv_heads):
    """sdpa (bias as a float mask) and mha (explicit softmax) agree for every kind, with GQA."""
    ids = torch.randint(0, 37, (2, 12))
    outs = []
    for attention in ("mha", "sdpa"):
        model = tiny_model(positional=name, attention={"name": attention, "n_kv_heads": kv_heads})
        with torch.no_grad():
            outs.append(model(ids))
    assert torch.allclose(outs[0], outs[1], atol=1e-5)


@pytest.mark.parametrize("name", RELATIVE_KINDS)
def test_gqa_models_keep_cache_equivalence(name):
    model = tiny_model(positional=name, attention={"name": "sdpa", "n_kv_heads": 2})
    ids = torch.randint(0, 37, (2, 16))
    with torch.no_grad():
        full = model(ids)
        cache = model.new_cache(2, 16)
        steps = [model(ids[:, :5], cache=cache)]
        steps += [model(ids[:, t:t + 1], cache=cache) for t in range(5, 16)]
    assert torch.allclose(torch.cat(steps, dim=1), full, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", NEW_KINDS)
def test_bf16_models_run(name):
    model = tiny_model(positional=name).to(torch.bfloat16)
    with torch.no_grad():
        logits = model(torch.randint(0, 37, (1, 8)))
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits).all()


@pytest.mark.parametrize("fraction", [1.0, 0.5])
def test_rope_hand_written_backward_matches_autograd(fraction):
    """RoPE's backward is the inverse rotation; gradcheck compares it with finite differences."""
    from llmbricks.core.component import Dims
    from llmbricks.plugins.positional.rope import RotaryPositional

    dims = Dims(vocab_size=10, context_length=16, emb_dim=64, n_heads=2, n_kv_heads=1,
                n_layers=1, dropout=0.0)
    rope = RotaryPositional(RotaryPositional.Params(rotary_fraction=fraction), dims)
    pos = rope.context(torch.arange(3, 9), torch.arange(3, 9))
    q = torch.randn(2, 2, 6, 32, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 1, 6, 32, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: rope.rotate(a, b, pos), (q, k))
