"""Compute-matched budgets (`ablate --match`, core/ablation/match.py): every variant gets the
baseline's budget in steps, tokens, FLOPs or time, and plan.json records it."""

from __future__ import annotations

import json

import pytest
import yaml

from llmbricks.core.ablation import match as match_module
from llmbricks.core.ablation.estimate import VariantEstimate
from llmbricks.core.ablation.execute import prepare
from llmbricks.core.ablation.plan import make_plan
from llmbricks.core.errors import ConfigError, DataError

BASE = {
    "name": "abl",
    "model": {"vocab_size": 64, "context_length": 16, "emb_dim": 32, "n_layers": 2, "n_heads": 4,
              "positional": {"name": "rope", "theta": 500.0}},
    "train": {"max_steps": 10, "batch_size": 2},
    "seed": 10,
}
#: FLOPs per token, 6N + 12 L H Q T, of BASE at width 32 and 64 (rope: no position table; the
#: head is tied to the token table, which counts once).
#: D = 32: a block is norms 2 x 64 + q, k, v 3 x 32^2 + out 32^2 + 32 + up 32 x 128 + 128
#:         + down 128 x 32 + 32 = 12,608; N = 2 x 12,608 + final norm 64 + table 64 x 32 = 27,328;
#:         attention 2 x 4 x 8 x 16 = 1,024; 6 x 27,328 + 12 x 1,024 = 176,256.
#: D = 64: a block is 256 + 12,288 + 4,160 + 16,640 + 16,448 = 49,792; N = 99,584 + 128 + 4,096
#:         = 103,808; attention 2 x 4 x 16 x 16 = 2,048; 6 x 103,808 + 12 x 2,048 = 647,424.
FLOPS = {32: 176_256, 64: 647_424}


@pytest.fixture
def config_file(tmp_path):
    def write(**sections):
        path = tmp_path / "abl.yaml"
        path.write_text(yaml.safe_dump({**BASE, **sections}), encoding="utf-8")
        return path
    return write


def test_flops_gives_the_smaller_model_more_steps_in_the_inverse_ratio(config_file):
    plan = make_plan(config_file(), grid=["model.emb_dim=32,64"], baseline="64", match="flops")
    small, big = plan.variants  # emb_dim=32, emb_dim=64 (the baseline)
    assert plan.match["flops_per_token"] == {"emb_dim=32": FLOPS[32], "emb_dim=64": FLOPS[64]}
    assert plan.match["tokens_per_step"] == {"emb_dim=32": 32, "emb_dim=64": 32}  # 2 x 1 x 16
    # Budget: the baseline's 10 steps x 32 tokens x 647,424 FLOPs = 207,175,680 FLOPs. The small
    # model's step costs 32 x 176,256 = 5,640,192: 207,175,680 / 5,640,192 = 36.73 -> 37 steps.
    assert plan.match["budget"] == 10 * 32 * 647_424 == 207_175_680
    assert plan.match["steps"] == {"emb_dim=32": 37, "emb_dim=64": 10}
    assert (small.config.train.max_steps, big.config.train.max_steps) == (37, 10)
    assert small.config.train.max_steps / big.config.train.max_steps == \
        pytest.approx(FLOPS[64] / FLOPS[32], rel=0.01)


def test_tokens_divides_the_baselines_tokens_by_each_batch(config_file):
    # The baseline's budget is max_tokens: 320 tokens at 2 x 1 x 16 = 32 per step is 10 steps.
    path = config_file(train={"max_tokens": 320, "batch_size": 2})
    plan = make_plan(path, grid=["train.batch_size=2,4,3"], match="tokens")
    assert plan.match["unit"] == "tokens" and plan.match["budget"] == 320
    assert plan.match["tokens_per_step"] == {"batch_size=2": 32, "batch_size=4": 64,
                                             "batch_size=3": 48}
    # 320 / 64 = 5; 320 / 48 = 6.67 -> 7.
    assert plan.match["steps"] == {"batch_size=2": 10, "batch_size=4": 5, "batch_size=3": 7}
    for variant in plan.variants:
        train = variant.config.train
        assert train.max_steps == plan.match["steps"][variant.name]
        assert train.max_tokens is None and train.epochs is None


def test_steps_leaves_every_budget_alone_but_still_records_the_costs(config_file):
    path = config_file()
    plain = make_plan(path, grid=["model.emb_dim=32,64", "train.max_steps=10,20"])
    steps = make_plan(path, grid=["model.emb_dim=32,64", "train.max_steps=10,20"], match="steps")
    assert [v.config for v in plain.variants] == [v.config for v in steps.variants]
    assert [v.config.train.max_steps for v in steps.variants] == [10, 20, 10, 20]
    assert plain.match["unit"] == "steps" and plain.match["budget"] == 10
    assert plain.match["steps"] == {v.name: v.config.train.max_steps for v in plain.variants}
    assert plain.match["flops_per_token"]["emb_dim=64,max_steps=20"] == FLOPS[64]
    # The config's ablation.match is the default of --match.
    section = make_plan(config_file(ablation={"match": "tokens"}), grid=["train.batch_size=2,4"])
    assert section.match["unit"] == "tokens" and section.match["steps"]["batch_size=4"] == 5


def test_a_baseline_budgeted_in_epochs_is_refused_in_one_line(config_file):
    path = config_file(train={"epochs": 2, "batch_size": 2})
    assert make_plan(path, grid=["train.batch_size=2,4"]).match["budget"] is None  # steps: fine
    with pytest.raises(ConfigError) as caught:
        make_plan(path, grid=["train.batch_size=2,4"], match="flops")
    message = str(caught.value)
    assert "\n" not in message
    assert message == ("--match flops: the baseline batch_size=2 budgets its training in "
                       "train.epochs, whose steps depend on the data's size; give it "
                       "train.max_steps or train.max_tokens")


def test_plan_json_records_the_match_and_the_configs_carry_the_steps(config_file, tmp_path):
    plan = make_plan(config_file(), grid=["model.emb_dim=32,64"], baseline="64", match="flops")
    prepare(plan, tmp_path / "abl")
    stored = json.loads((tmp_path / "abl" / "plan.json").read_text())
    assert stored["match"] == {
        "unit": "flops", "budget": 207_175_680, "baseline_steps": 10,
        "steps": {"emb_dim=32": 37, "emb_dim=64": 10},
        "flops_per_token": {"emb_dim=32": FLOPS[32], "emb_dim=64": FLOPS[64]},
        "tokens_per_step": {"emb_dim=32": 32, "emb_dim=64": 32}}
    written = yaml.safe_load((tmp_path / "abl" / "configs" / "emb_dim=32.yaml").read_text())
    assert written["train"]["max_steps"] == 37 and written["train"]["max_tokens"] is None
    # The same command again is the same experiment: its runs are resumed, not refused.
    again = make_plan(config_file(), grid=["model.emb_dim=32,64"], baseline="64", match="flops")
    assert len(prepare(again, tmp_path / "abl")[0]) == 2
    # Another unit is another experiment.
    tokens = make_plan(config_file(), grid=["model.emb_dim=32,64"], baseline="64", match="tokens")
    with pytest.raises(ConfigError, match="holds another ablation"):
        prepare(tokens, tmp_path / "abl")


def test_a_plan_json_from_before_match_is_the_same_experiment_as_steps(config_file):
    plan = make_plan(config_file(), grid=["train.lr=1e-3,3e-3"])
    stored = plan.to_data()
    del stored["match"]  # written before --match existed
    assert plan.same_experiment(stored)
    flops = make_plan(config_file(), grid=["train.lr=1e-3,3e-3"], match="flops")
    assert not flops.same_experiment(stored)


def test_time_is_timed_once_then_reused_from_the_directory(config_file, tmp_path, monkeypatch):
    seconds = {32: 0.1, 64: 0.4}

    def timed(config, registry, **_):
        return VariantEstimate(1, seconds[config.model.emb_dim], config.train.max_steps)

    monkeypatch.setattr(match_module, "estimate_variant", timed)
    path = config_file()
    plan = make_plan(path, grid=["model.emb_dim=32,64"], baseline="64", match="time")
    # 10 steps x 0.4 s = 4 s; the small model's 0.1 s steps fit 40 of them.
    assert plan.match["budget"] == pytest.approx(4.0)
    assert plan.match["steps"] == {"emb_dim=32": 40, "emb_dim=64": 10}
    assert plan.match["step_s"] == {"emb_dim=32": 0.1, "emb_dim=64": 0.4}
    prepare(plan, tmp_path / "abl")
    seconds[32] = 0.2  # a second timing would differ: the directory's steps are kept instead
    again = make_plan(path, grid=["model.emb_dim=32,64"], baseline="64", match="time",
                      directory=tmp_path / "abl")
    assert again.match["steps"] == plan.match["steps"]
    assert len(prepare(again, tmp_path / "abl")[0]) == 2  # nothing refused, configs unchanged
    fresh = make_plan(path, grid=["model.emb_dim=32,64"], baseline="64", match="time",
                      directory=tmp_path / "elsewhere")
    assert fresh.match["steps"]["emb_dim=32"] == 20
    longer = make_plan(config_file(train={"max_steps": 20, "batch_size": 2}),
                       grid=["model.emb_dim=32,64"], baseline="64", match="time",
                       directory=tmp_path / "abl")  # another budget: timed again
    assert longer.match["steps"] == {"emb_dim=32": 40, "emb_dim=64": 20}


def test_a_vocabulary_the_data_must_teach_is_needed_for_flops_only(config_file, tmp_path):
    """A `char` tokenizer learns its vocabulary from the data: without the data, a plan in steps
    or tokens still expands (its FLOPs per token unknown), and `--match flops` says why not."""
    missing = tmp_path / "no-corpus.txt"
    path = config_file(model={**BASE["model"], "vocab_size": "auto", "tokenizer": "char"},
                       data={"source": {"name": "text", "path": str(missing)}})
    plan = make_plan(path, grid=["train.batch_size=2,4"], match="tokens")
    assert plan.match["flops_per_token"] == {"batch_size=2": None, "batch_size=4": None}
    assert plan.match["steps"] == {"batch_size=2": 10, "batch_size=4": 5}
    with pytest.raises(DataError, match="no-corpus.txt does not exist"):
        make_plan(path, grid=["train.batch_size=2,4"], match="flops")
