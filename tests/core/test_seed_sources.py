"""The seed's sources of variance (initialisation, data order, dropout), each fixable apart,
recorded in the manifest; and the ablation's ``--vary`` built on them."""

from __future__ import annotations

import json

import pytest
import torch

from llmbricks.core.ablation.plan import make_plan
from llmbricks.core.config import load_config

SHAPE = {"vocab_size": "auto", "tokenizer": "char", "context_length": 16, "emb_dim": 32,
         "n_layers": 2, "n_heads": 2, "dropout": 0.1}


def test_every_source_follows_seed_unless_set():
    config = load_config({"seed": 4})
    assert (config.init_seed, config.data_seed, config.dropout_seed) == (4, 4, None)
    assert "seed_sources" not in config.to_data()  # configs that do not set it stay as they were
    fixed = load_config({"seed": 4, "seed_sources": {"data": 9}})
    assert (fixed.init_seed, fixed.data_seed) == (4, 9)
    assert fixed.seed_record() == {"init": 4, "data": 9, "dropout": "init stream"}
    assert fixed.to_data()["seed_sources"] == {"init": None, "data": 9, "dropout": None}


def tiny_run(tmp_path, name: str, seed: int, sources: dict | None, lr: float = 3e-3):
    from llmbricks.core.train.session import train

    (tmp_path / "corpus.txt").write_text("the quick brown fox jumps over the lazy dog " * 40)
    raw = {"name": name, "model": SHAPE, "seed": seed,
           "data": {"source": {"name": "text", "path": str(tmp_path / "corpus.txt")}},
           "train": {"max_steps": 4, "batch_size": 4, "lr": lr, "warmup_steps": 0,
                     "eval_every": 4, "eval_batches": 1, "log_every": 1, "loggers": ["jsonl"],
                     "sample_prompt": None}}
    if sources is not None:
        raw["seed_sources"] = sources
    torch.set_num_threads(1)
    train(load_config(raw), out=tmp_path / name)
    run = tmp_path / name
    losses = [e["loss"] for e in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
              if e["event"] == "step"]
    from safetensors.torch import load_file

    weights = load_file(sorted((run / "checkpoints").glob("step-*"))[-1] / "model.safetensors")
    manifest = json.loads((run / "manifest.json").read_text())
    return losses, weights, manifest


@pytest.mark.slow
def test_fixing_init_and_data_makes_other_seeds_identical_and_init_alone_changes_only_data(tmp_path):
    a, _, manifest = tiny_run(tmp_path, "a", 1, {"init": 9, "data": 5})
    b, _, _ = tiny_run(tmp_path, "b", 2, {"init": 9, "data": 5})
    assert a == b                                     # dropout follows the init stream: the same
    assert manifest["seeds"] == {"init": 9, "data": 5, "dropout": "init stream"}
    c, _, _ = tiny_run(tmp_path, "c", 2, {"init": 9})  # same init, seed 2's data order
    assert c != a
    d, _, _ = tiny_run(tmp_path, "d", 2, {"init": 9, "data": 5, "dropout": 3})
    assert d != a                                     # only the dropout masks changed
    plain, _, manifest = tiny_run(tmp_path, "plain", 9, None)
    assert manifest["seeds"] == {"init": 9, "data": 9, "dropout": "init stream"}


@pytest.mark.slow
def test_a_fixed_init_seed_gives_the_same_initial_weights_whatever_the_seed(tmp_path):
    """At a learning rate of 1e-9 the weights after 4 steps are the initial ones."""
    _, e, _ = tiny_run(tmp_path, "e", 2, {"init": 9}, lr=1e-9)
    _, f, _ = tiny_run(tmp_path, "f", 3, {"init": 9}, lr=1e-9)
    _, g, _ = tiny_run(tmp_path, "g", 3, None, lr=1e-9)
    assert all(torch.allclose(e[k], f[k], atol=1e-6) for k in e)
    assert not all(torch.allclose(e[k], g[k], atol=1e-6) for k in e)


def write_plan_config(tmp_path, **ablation):
    import yaml

    path = tmp_path / "abl.yaml"
    path.write_text(yaml.safe_dump({"model": {**SHAPE, "vocab_size": 64, "tokenizer": None},
                                    "train": {"max_steps": 2}, "seed": 10,
                                    "ablation": {"grid": {"train.lr": [1e-3, 2e-3]}, "seeds": 3,
                                                 **ablation}}))
    return path


@pytest.mark.parametrize("vary, run_2", [
    ("all", ["seed=12"]),
    ("init", ["seed=12", "seed_sources.data=10"]),
    ("data", ["seed=12", "seed_sources.init=10", "seed_sources.dropout=10"]),
])
def test_vary_holds_the_other_sources_at_the_first_seed(tmp_path, vary, run_2):
    plan = make_plan(write_plan_config(tmp_path), vary=vary)
    assert plan.vary == vary and plan.seed_sets(2) == run_2 and plan.seed_sets(0)[0] == "seed=10"
    assert plan.to_data()["vary"] == vary
    assert make_plan(write_plan_config(tmp_path, vary=vary)).vary == vary  # from the section


def test_a_plan_written_before_vary_is_the_same_experiment_as_vary_all(tmp_path):
    plan = make_plan(write_plan_config(tmp_path))
    stored = plan.to_data()
    del stored["vary"]
    assert plan.same_experiment(stored)
    assert not make_plan(write_plan_config(tmp_path), vary="data").same_experiment(stored)
