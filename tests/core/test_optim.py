"""AdamW groups and the learning-rate schedule (appendix D with its errata fixed)."""

from __future__ import annotations

import math

import pytest
from torch import nn

from llmbricks.core.train.optim import adamw, learning_rate, param_groups


def test_warmup_reaches_the_peak_then_cosine_ends_at_min_lr():
    kw = {"lr": 1e-3, "total_steps": 101, "warmup_steps": 20, "min_lr": 1e-4}
    assert learning_rate(0, **kw) == pytest.approx(1e-3 / 20)
    assert learning_rate(9, **kw) == pytest.approx(1e-3 * 10 / 20)
    # The last warmup step really uses the peak (the book's code never passed it on).
    assert learning_rate(19, **kw) == pytest.approx(1e-3)
    assert learning_rate(20, **kw) == pytest.approx(1e-3)          # first step after warmup
    # Halfway through the cosine: cos(pi/2) = 0 -> the midpoint of lr and min_lr.
    assert learning_rate(60, **kw) == pytest.approx((1e-3 + 1e-4) / 2)
    assert learning_rate(100, **kw) == pytest.approx(1e-4)         # last step: exactly min_lr
    values = [learning_rate(s, **kw) for s in range(20, 101)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def test_constant_schedule_and_no_warmup():
    assert learning_rate(0, lr=3e-4, total_steps=10, schedule="constant") == 3e-4
    assert learning_rate(9, lr=3e-4, total_steps=10, warmup_steps=2, schedule="constant") == 3e-4
    assert learning_rate(0, lr=1.0, total_steps=5, min_lr=0.5) == 1.0
    assert learning_rate(4, lr=1.0, total_steps=5, min_lr=0.5) == 0.5
    assert learning_rate(0, lr=1.0, total_steps=1) == 1.0  # a one-step budget


def test_weight_decay_only_on_matrices_not_norms_biases_or_embeddings():
    model = nn.ModuleDict({"emb": nn.Embedding(10, 4), "lin": nn.Linear(4, 4),
                           "norm": nn.LayerNorm(4), "head": nn.Linear(4, 10, bias=False)})
    model["head"].weight = model["emb"].weight  # tied: listed once, and not decayed
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(model["lin"].weight)}
    assert len(no_decay["params"]) == 4  # embedding (= head), lin bias, norm weight and bias
    decay, _ = param_groups(model, 0.1, decay_embeddings=True)
    assert {id(p) for p in decay["params"]} == {id(model["lin"].weight), id(model["emb"].weight)}


def test_frozen_parameters_are_left_out_and_fused_adamw_is_used_on_cpu():
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 1))
    model[0].requires_grad_(False)
    optimizer = adamw(model, lr=1e-3, weight_decay=0.1)
    listed = [p for group in optimizer.param_groups for p in group["params"]]
    assert len(listed) == 2 and all(p.requires_grad for p in listed)
    assert optimizer.defaults.get("fused") in (True, None)
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        adamw(model, lr=1e-3, weight_decay=0.1)


def test_cosine_matches_its_closed_form_everywhere():
    for step in range(5, 50):
        p = (step - 5) / (50 - 1 - 5)
        want = 0.1 + (1.0 - 0.1) * 0.5 * (1 + math.cos(math.pi * p))
        assert learning_rate(step, lr=1.0, total_steps=50, warmup_steps=5, min_lr=0.1) == pytest.approx(want)
