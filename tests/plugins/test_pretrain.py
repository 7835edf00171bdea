"""The pretrain trainer's loss and its evaluation (the book's calc_loss_batch/calc_loss_loader)."""

from __future__ import annotations

import pytest
import torch

import llmbricks.plugins.trainers.pretrain as pretrain
from llmbricks.core.build import build_model
from llmbricks.core.config import load_config


@pytest.fixture
def model():
    torch.manual_seed(0)
    return build_model(load_config({"model": {"preset": "nanogpt-baby", "vocab_size": 65}})).eval()


def test_next_token_loss_is_mean_cross_entropy(model):
    x, y = torch.randint(0, 65, (2, 8)), torch.randint(0, 65, (2, 8))
    with torch.no_grad():
        logits = model(x)
        want = -torch.log_softmax(logits, -1).gather(-1, y[..., None]).mean()
        assert pretrain.next_token_loss(model, (x, y)).item() == pytest.approx(want.item(), rel=1e-6)


@pytest.mark.parametrize("budget", [1, 1 << 24])
def test_evaluation_in_big_passes_equals_batch_by_batch(model, monkeypatch, budget):
    monkeypatch.setattr(pretrain, "EVAL_LOGITS_BUDGET", budget)
    batches = [(torch.randint(0, 65, (n, 16)), torch.randint(0, 65, (n, 16))) for n in (4, 4, 4, 3)]
    with torch.no_grad():
        by_batch = sum(pretrain.next_token_loss(model, b).item() for b in batches) / len(batches)
        assert pretrain.mean_loss(model, batches, torch.device("cpu")) == pytest.approx(by_batch, rel=1e-6)
    assert pretrain.mean_loss(model, [], torch.device("cpu")) is None
