"""Ablation plans: grid parsing and expansion, names, baselines, and validation before any run."""

from __future__ import annotations

import pytest
import yaml

from llmbricks.core.ablation.plan import make_plan, parse_grid, split_values
from llmbricks.core.errors import ConfigError

BASE = {
    "name": "abl",
    "model": {"vocab_size": 64, "context_length": 16, "emb_dim": 32, "n_layers": 2, "n_heads": 4,
              "positional": {"name": "rope", "theta": 500.0}},
    "train": {"max_steps": 10, "batch_size": 2},
    "seed": 10,
}


@pytest.fixture
def config_file(tmp_path):
    def write(**extra):
        path = tmp_path / "abl.yaml"
        path.write_text(yaml.safe_dump({**BASE, **extra}), encoding="utf-8")
        return path
    return write


def test_values_split_at_top_level_commas_only():
    assert split_values("a, {name: rope, theta: 5},[1, 2],'x,y'") == \
        ["a", "{name: rope, theta: 5}", "[1, 2]", "'x,y'"]


def test_grid_values_are_parsed_like_set_values():
    assert parse_grid("train.lr=1e-3,3.0e-4") == ("train.lr", [1e-3, 3e-4])
    assert parse_grid("model.positional=rope,{name: alibi}") == \
        ("model.positional", ["rope", {"name": "alibi"}])


@pytest.mark.parametrize("option, message", [
    ("model.positional", "expected PATH=V1,V2"),
    ("model.positionl=rope", "^--grid model.positionl: unknown config path 'model.positionl'"),
    ("train.lr=1,1", "a value is listed twice"),
])
def test_bad_grid_options_are_named(option, message):
    with pytest.raises(ConfigError, match=message):
        parse_grid(option)


def test_a_bad_path_in_the_config_section_is_named_there(config_file):
    with pytest.raises(ConfigError, match="^ablation.grid: path model.n_layer: unknown config path"):
        make_plan(config_file(ablation={"grid": {"model.n_layer": [1, 2]}}))


def test_a_directory_planned_with_another_base_config_is_refused(config_file, tmp_path):
    from llmbricks.core.ablation.execute import prepare

    prepare(make_plan(config_file(), grid=["train.lr=1e-3,3e-3"]), tmp_path / "abl")
    again = make_plan(config_file(), grid=["train.lr=1e-3,3e-3"])
    assert len(prepare(again, tmp_path / "abl")[0]) == 2  # the same plan: nothing refused
    edited = make_plan(config_file(train={"max_steps": 20, "batch_size": 2}),
                       grid=["train.lr=1e-3,3e-3"])
    with pytest.raises(ConfigError, match="the config of lr=0.001, lr=0.003 changed since"):
        prepare(edited, tmp_path / "abl")


def test_two_grids_multiply_in_order_with_readable_names(config_file):
    plan = make_plan(config_file(), grid=["model.positional=rope,alibi", "train.lr=0.001,0.01"])
    assert [v.name for v in plan.variants] == [
        "positional=rope,lr=0.001", "positional=rope,lr=0.01",
        "positional=alibi,lr=0.001", "positional=alibi,lr=0.01"]
    assert plan.variants[3].config.train.lr == 0.01
    assert plan.variants[3].config.model.positional.name == "alibi"
    assert plan.baseline == "positional=rope,lr=0.001"  # the first, by default
    assert len(plan.jobs()) == 4 and plan.seeds == [10]


def test_a_component_name_grid_drops_the_old_components_params(config_file):
    plan = make_plan(config_file(), grid=["model.positional=rope,alibi"])
    rope, alibi = (v.config.model.positional for v in plan.variants)
    assert rope.params["theta"] == 500.0  # same name: the base's params are kept
    assert "theta" not in alibi.params  # new name: rope's theta is gone


def test_the_config_section_gives_grid_seeds_and_baseline_and_flags_override_it(config_file):
    path = config_file(ablation={"grid": {"model.norm": ["layernorm", "rmsnorm"]}, "seeds": 3,
                                 "baseline": "rmsnorm"})
    plan = make_plan(path)
    assert [v.name for v in plan.variants] == ["norm=layernorm", "norm=rmsnorm"]
    assert plan.seeds == [10, 11, 12] and plan.baseline == "norm=rmsnorm"
    assert all(v.config.ablation is None for v in plan.variants)  # runs carry no ablation section
    flagged = make_plan(path, grid=["model.norm=rmsnorm,layernorm", "train.lr=0.1,0.2"], seeds=2,
                        baseline="norm=layernorm,lr=0.2")
    assert [v.name for v in flagged.variants][:2] == ["norm=rmsnorm,lr=0.1", "norm=rmsnorm,lr=0.2"]
    assert flagged.seeds == [10, 11] and flagged.baseline == "norm=layernorm,lr=0.2"


def test_set_overrides_apply_to_every_variant(config_file):
    plan = make_plan(config_file(), grid=["model.norm=layernorm,rmsnorm"],
                     overrides=["model.n_layers=1"])
    assert {v.config.model.n_layers for v in plan.variants} == {1}


@pytest.mark.parametrize("grid, message", [
    ("model.n_heads=4,5", "variant n_heads=5: model.emb_dim: 32 is not divisible"),
    ("model.positional=rope,rop", "variant positional=rop: model.positional: unknown positional 'rop'"),
])
def test_an_invalid_variant_is_reported_with_its_path_and_reason(config_file, grid, message):
    with pytest.raises(ConfigError, match=message):
        make_plan(config_file(), grid=[grid])


def test_an_unknown_baseline_lists_the_variants(config_file):
    with pytest.raises(ConfigError, match="baseline 'gelu' is not one variant of the grid"):
        make_plan(config_file(), grid=["model.norm=layernorm,rmsnorm"], baseline="gelu")


def test_component_values_with_params_get_distinct_names(config_file):
    plan = make_plan(config_file(), grid=["model.positional={name: rope, theta: 100},"
                                          "{name: rope, theta: 10000}"])
    assert [v.name for v in plan.variants] == ["positional=rope-theta=100",
                                               "positional=rope-theta=10000"]


def test_a_baseline_value_shared_by_several_variants_asks_for_a_full_name(config_file):
    with pytest.raises(ConfigError, match=r"baseline 'rope' matches 2 variants "
                                          r"\(positional=rope,lr=0.001, positional=rope,lr=0.003\)"):
        make_plan(config_file(), grid=["model.positional=rope,alibi", "train.lr=1e-3,3e-3"],
                  baseline="rope")
    plan = make_plan(config_file(), grid=["model.positional=rope,alibi", "train.lr=1e-3,3e-3"],
                     baseline="positional=rope,lr=0.003")
    assert plan.baseline == "positional=rope,lr=0.003"


# --- named variants (leave-one-out) ------------------------------------------------------------

def test_named_variants_each_make_their_own_changes(tmp_path):
    path = tmp_path / "loo.yaml"
    path.write_text(yaml.safe_dump({**BASE, "ablation": {"variants": {
        "base": {}, "absolute": {"model.positional": "absolute"},
        "small-lr": {"train.lr": 3e-4, "train.warmup_steps": 2}}, "baseline": "base"}},
        sort_keys=False), encoding="utf-8")
    plan = make_plan(path, seeds=2)
    assert [v.name for v in plan.variants] == ["base", "absolute", "small-lr"]  # file order
    assert plan.baseline == "base" and plan.grid == {} and len(plan.jobs()) == 6
    base, absolute, small = (v.config for v in plan.variants)
    assert base.model.positional.name == "rope" and absolute.model.positional.name == "absolute"
    assert (small.train.lr, small.train.warmup_steps) == (3e-4, 2)
    assert base.train.lr == 1e-3  # a variant's changes stay its own


@pytest.mark.parametrize("section, grid, message", [
    ({"variants": {"a": {}}, "grid": {"train.lr": [1e-3]}}, [], "a grid .* or named ablation.variants, not both"),
    ({"variants": {"a": {}}}, ["train.lr=1e-3,2e-3"], "not both"),
    ({"variants": {"a/b": {}}}, [], "variant name 'a/b': use letters"),
    ({"variants": {"a": {"model.positionl": "rope"}}}, [], "unknown config path 'model.positionl'"),
    ({"variants": {"a": {"model.positional": "ropee"}}}, [], "^variant a: .*'rope'"),
])
def test_bad_named_variants_are_named(config_file, section, grid, message):
    with pytest.raises(ConfigError, match=message):
        make_plan(config_file(ablation=section), grid=grid)


def test_the_speedrun_record_ablation_leaves_out_one_ingredient_at_a_time():
    from pathlib import Path

    record = Path(__file__).resolve().parents[2] / "examples/configs/speedrun-cpu.yaml"
    plan = make_plan(record)
    assert plan.baseline == "record" and len(plan.seeds) == 3
    base = plan.variants[0].config.to_data()
    for variant in plan.variants[1:]:
        assert len(variant.overrides) == 1  # one ingredient each
        assert variant.config.to_data() != base
