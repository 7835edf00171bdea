"""Optimizers as components: each trains, AdamW is today's bit for bit, Muon orthogonalises the
blocks' matrices only, and a run killed mid-way resumes to the same weights with each of them."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch

from llmbricks.core.build import build_model
from llmbricks.core.config import load_config
from llmbricks.core.errors import ComponentError
from llmbricks.core.registry import get_registry
from llmbricks.core.train.optim import build_optimizer, set_learning_rate
from llmbricks.plugins.optimizers.muon import Muon, hidden_matrices, orthogonalize
from tests.e2e.test_kill_points import record, train
from tests.e2e.train_fixtures import tiny_config

MODEL = {"vocab_size": 40, "context_length": 16, "emb_dim": 32, "n_layers": 2, "n_heads": 4,
         "dropout": 0.0, "positional": "rope", "norm": "rmsnorm", "feedforward": "swiglu",
         "head": {"name": "lm", "tie_weights": False}}
LR = {"adamw": 3e-3, "sgd": 0.1, "lion": 1e-3, "muon": 3e-3}


def setup(optimizer: str, **train: object):
    config = load_config({"model": MODEL, "train": {"optimizer": optimizer, "lr": LR[optimizer],
                                                     "weight_decay": 0.1, **train}})
    torch.manual_seed(0)
    model = build_model(config)
    batch = torch.randint(0, 40, (4, 17), generator=torch.Generator().manual_seed(1))
    return config, model, batch


def loss_of(model, batch) -> torch.Tensor:
    logits = model(batch[:, :-1])
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())


def steps(model, optimizer, batch, n: int = 20) -> list[float]:
    losses = []
    for _ in range(n):
        loss = loss_of(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("name", ["adamw", "sgd", "lion", "muon"])
def test_each_optimizer_lowers_the_loss_on_a_fixed_batch(name):
    config, model, batch = setup(name)
    losses = steps(model, build_optimizer(model, config.train), batch)
    assert losses[-1] < 0.8 * losses[0], losses


def test_adamw_is_todays_optimizer_bit_for_bit():
    """Today's AdamW: two groups (matrices decayed), fused, the schedule's lr set every step."""
    config, model, batch = setup("adamw")
    _, reference, _ = setup("adamw")
    ours = build_optimizer(model, config.train)
    table = id(reference.embedding.weight)
    decay = [p for p in reference.parameters() if p.dim() >= 2 and id(p) != table]
    rest = [p for p in reference.parameters() if p.dim() < 2 or id(p) == table]
    theirs = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                                {"params": rest, "weight_decay": 0.0}],
                               lr=3e-3, betas=(0.9, 0.999), fused=True)
    for step in range(20):
        for net, optimizer in ((model, ours), (reference, theirs)):
            set_learning_rate(optimizer, 3e-3 * (step + 1) / 20)
            loss_of(net, batch).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    for (name, a), b in zip(model.state_dict().items(), reference.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("shape", [(64, 64), (32, 96), (96, 32)])
def test_newton_schulz_puts_every_singular_value_near_one(shape):
    """A raw update whose singular values span 1 to 1/30 (times 100) comes out near orthogonal.

    Five quintic steps multiply a small singular value by up to a^5 ~ 490, so directions down to
    about 1/100 of the largest (after the Frobenius normalisation) reach the [0.7, 1.2] band.
    """
    generator = torch.Generator().manual_seed(0)
    rank = min(shape)
    left, _ = torch.linalg.qr(torch.randn(shape[0], rank, generator=generator))
    right, _ = torch.linalg.qr(torch.randn(shape[1], rank, generator=generator))
    spread = torch.logspace(0, -torch.log10(torch.tensor(30.0)).item(), rank)
    update = 100.0 * left @ torch.diag(spread) @ right.T
    singular = torch.linalg.svdvals(orthogonalize(update))
    assert singular.min() > 0.6 and singular.max() < 1.25, singular
    # NS5(U S V^T) = U f(S) V^T: transposing the input transposes the output
    torch.testing.assert_close(orthogonalize(update.T), orthogonalize(update).T, atol=1e-5, rtol=0)


def test_muon_takes_the_blocks_matrices_and_leaves_the_rest_to_adamw():
    config, model, _ = setup("muon")
    optimizer = build_optimizer(model, config.train)
    assert isinstance(optimizer, Muon)
    muon = {id(p) for g in optimizer.param_groups if g["muon"] for p in g["params"]}
    adam = {id(p) for g in optimizer.param_groups if not g["muon"] for p in g["params"]}
    names = {id(p): n for n, p in model.named_parameters()}
    assert muon == hidden_matrices(model) and not muon & adam
    assert sorted(names[i] for i in muon) == sorted(
        n for n, p in model.named_parameters() if n.startswith("blocks.") and p.dim() == 2)
    assert {"embedding.table.weight", "head.proj.weight", "norm.weight"} <= {names[i] for i in adam}
    assert all(names[i].endswith(("norm.weight", "bias")) or not names[i].startswith("blocks.")
               for i in adam)
    # The matrices run at muon's own lr; the schedule scales both parts alike.
    set_learning_rate(optimizer, config.train.lr / 2)
    assert {g["lr"] for g in optimizer.param_groups if g["muon"]} == {0.01}
    assert {g["lr"] for g in optimizer.param_groups if not g["muon"]} == {config.train.lr / 2}


def test_an_unknown_optimizer_names_the_nearest():
    with pytest.raises(ComponentError, match="did you mean 'muon'"):
        load_config({"train": {"optimizer": "muonn"}})


def test_optimizer_params_show_in_the_registry():
    params = get_registry().get("optimizer", "muon").Params()
    assert (params.lr, params.momentum, params.nesterov, params.ns_steps) == (0.02, 0.95, True, 5)


@pytest.mark.parametrize("name", ["sgd", "lion", "muon"])
def test_a_killed_run_resumes_to_the_uninterrupted_weights(name, tmp_path: Path):
    """A SIGKILL right after the second checkpoint is renamed in, then --resume: same bytes."""
    runs = {}
    for label, kill_at in (("straight", None), ("killed", "checkpoint:renamed@2")):
        folder = tmp_path / label
        folder.mkdir()
        tiny_config(folder, max_steps=12, eval_every=4, checkpoint_every=4, keep_checkpoints=2,
                    optimizer=name, lr=LR[name])
        first = train(folder, kill_at=kill_at)
        if kill_at:
            assert first.returncode == -signal.SIGKILL, first.stderr
            first = train(folder, "--resume")
        assert first.returncode == 0, first.stderr
        runs[label] = record(folder / "run")
    assert runs["killed"] == runs["straight"]


@pytest.mark.parametrize("name", ["adamw", "sgd", "lion", "muon"])
def test_embedding_and_head_can_have_their_own_learning_rate(name):
    config, model, _ = setup(name, embedding_lr_scale=0.5, head_lr_scale=4.0)
    optimizer = build_optimizer(model, config.train)
    set_learning_rate(optimizer, 2e-3)
    rate_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    assert rate_of[id(model.embedding.weight)] == pytest.approx(1e-3)
    assert rate_of[id(model.head.proj.weight)] == pytest.approx(8e-3)
    assert rate_of[id(model.norm.weight)] == pytest.approx(2e-3)  # hidden: the schedule's own
    listed = [id(p) for g in optimizer.param_groups for p in g["params"]]
    assert sorted(listed) == sorted(id(p) for p in model.parameters())  # each once


def test_bad_optimizer_params_are_config_errors():
    with pytest.raises(ComponentError, match="nesterov needs momentum > 0"):
        load_config({"train": {"optimizer": {"name": "sgd", "momentum": 0.0, "nesterov": True}}})
    with pytest.raises(ComponentError, match="momentum"):
        load_config({"train": {"optimizer": {"name": "muon", "momentum": 1.5}}})
