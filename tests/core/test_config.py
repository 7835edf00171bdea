"""Config loading: presets, overrides, file formats, resolution, cross-field checks, errors."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmbricks.core.component import ComponentSpec
from llmbricks.core.config import Config, load_config, parse_override
from llmbricks.core.config_io import parse_yaml
from llmbricks.core.errors import ComponentError, ConfigError


def default_attention(**changes: object) -> dict:
    """The attention's params with every default written out, then ``changes``."""
    from llmbricks.plugins.attention.base import AttentionParams

    return {**AttentionParams().model_dump(), **changes}

def test_defaults_resolve_every_component_param():
    config = load_config()
    assert config.model.norm == ComponentSpec(name="layernorm", params={"eps": 1e-5, "bias": True})
    assert config.model.attention.params == default_attention()
    assert config.model.arch.params == {"init": "normal", "zero_residual": False}
    assert config.seed == 123


def test_preset_fills_fields_and_explicit_fields_win():
    config = load_config({"model": {"preset": "gpt2-small", "n_layers": 2}})
    m = config.model
    assert (m.vocab_size, m.context_length, m.emb_dim, m.n_heads, m.n_layers) == (50257, 1024, 768, 12, 2)
    assert m.head.params == {"tie_weights": False, "softcap": None}


def test_spec_with_same_name_merges_params_new_name_replaces():
    same = load_config({"model": {"preset": "gpt2-small", "head": {"tie_weights": True}}})
    assert same.model.head == ComponentSpec(name="lm", params={"tie_weights": True, "softcap": None})
    same_named = load_config({"model": {"preset": "gpt2-small", "attention": {"name": "sdpa", "n_kv_heads": 4}}})
    assert same_named.model.attention.params == default_attention(n_kv_heads=4)


def test_override_sets_dotted_paths_with_yaml_values():
    config = load_config({"model": {"preset": "gpt2-small"}},
                         ["model.positional=none", "model.n_layers=2", "train.lr=3e-4",
                          "model.attention.qkv_bias=true", "seed=7"])
    assert config.model.positional.name == "none" and config.model.n_layers == 2
    assert config.train.lr == pytest.approx(3e-4) and isinstance(config.train.lr, float)
    assert config.model.attention.params["qkv_bias"] is True
    assert config.seed == 7


def test_restating_the_same_name_keeps_params():
    base = {"model": {"attention": {"name": "mha", "qkv_bias": True, "n_kv_heads": 2}}}
    for override in ("model.attention.name=mha", "model.attention=mha", "model.attention={name: mha}"):
        kept = load_config(base, [override])
        assert kept.model.attention.params == default_attention(qkv_bias=True, n_kv_heads=2), override
    merged = load_config(base, ["model.attention={n_kv_heads: 3}"])
    assert merged.model.attention.params == default_attention(qkv_bias=True, n_kv_heads=3)
    preset = load_config({"model": {"preset": "gpt2-small", "arch": "gpt"}})
    assert preset.model.arch.params == {"init": "torch", "zero_residual": False}  # the preset's param survives


def test_override_name_change_drops_params_of_other_component(registry_with):
    import types

    import llmbricks
    from llmbricks.core.component import ParamsModel
    from llmbricks.core.interfaces import PositionalEncoding

    class Scaled(PositionalEncoding):
        """A positional with a param of its own."""

        name = "scaled"

        class Params(ParamsModel):
            scale: float = 1.0

    @llmbricks.hookimpl
    def llmbricks_components():
        return [Scaled]

    @llmbricks.hookimpl
    def llmbricks_presets():
        return {"scaled-baby": {"n_layers": 1, "positional": {"name": "scaled", "scale": 3.0}}}

    reg = registry_with({"extra": types.SimpleNamespace(llmbricks_components=llmbricks_components,
                                                        llmbricks_presets=llmbricks_presets)})
    raw = {"model": {"positional": {"name": "scaled", "scale": 2.0}}}
    assert load_config(raw, registry=reg).model.positional.params == {"scale": 2.0}
    for override in ("model.positional.name=absolute", "model.positional=absolute"):
        changed = load_config(raw, [override], registry=reg)
        assert changed.model.positional == ComponentSpec(name="absolute", params={})
    # Over a preset too: a new name in the file drops the preset component's params.
    over_preset = load_config({"model": {"preset": "scaled-baby", "positional": "absolute"}}, registry=reg)
    assert over_preset.model.positional == ComponentSpec(name="absolute", params={})
    kept = load_config({"model": {"preset": "scaled-baby", "positional": "scaled"}}, registry=reg)
    assert kept.model.positional.params == {"scale": 3.0}


def test_partial_spec_without_name_takes_the_default_component():
    config = load_config({"model": {"norm": {"eps": 1e-6}}})
    assert config.model.norm == ComponentSpec(name="layernorm", params={"eps": 1e-6, "bias": True})
    via_set = load_config({}, ["model.norm.eps=1e-6"])
    assert via_set.model.norm == config.model.norm


@pytest.mark.parametrize("suffix,text", [
    (".yaml", "model:\n  preset: nanogpt-baby\n  n_layers: 3\ntrain:\n  lr: 1e-3\n"),
    (".toml", "[model]\npreset = 'nanogpt-baby'\nn_layers = 3\n[train]\nlr = 1e-3\n"),
    (".json", json.dumps({"model": {"preset": "nanogpt-baby", "n_layers": 3}, "train": {"lr": 1e-3}})),
])
def test_file_formats(write, suffix, text):
    config = load_config(write("config" + suffix, text))
    assert config.model.n_layers == 3 and config.model.emb_dim == 128
    assert config.train.lr == 1e-3


def test_vocab_auto_resolves_from_a_tokenizer_that_knows_its_size():
    config = load_config({"model": {"tokenizer": {"name": "char", "chars": "abc"}}})
    assert config.model.vocab_size == 3
    unresolved = load_config({"model": {"tokenizer": "char"}})
    assert unresolved.model.vocab_size == "auto"
    with pytest.raises(ConfigError, match="tokenizer 'char' learns its vocabulary from data"):
        unresolved.model.dims()


def test_vocab_smaller_than_tokenizer_is_an_error():
    with pytest.raises(ConfigError, match=r"model.vocab_size: 2 is smaller than the vocabulary of tokenizer 'char' \(3\)"):
        load_config({"model": {"vocab_size": 2, "tokenizer": {"name": "char", "chars": "abc"}}})


# --- errors: one line each, naming the path, the value and the fix ----------------------------


@pytest.mark.parametrize("overrides,expected", [
    (["model.positional=absolut"],
     "model.positional: unknown positional 'absolut' - did you mean 'absolute'? (available: absolute, alibi, none, rope, sinusoidal, t5"),
    (["model.norm.esp=1"],
     "model.norm.esp: unknown parameter 'esp' of norm 'layernorm' - did you mean 'eps'? (parameters: eps, bias)"),
    (["model.n_layers=many"], "model.n_layers: input should be a valid integer"),
    (["model.attention.qkv_bias=maybe"], "model.attention.qkv_bias: input should be a valid boolean"),
    (["model.emb_dim=130", "model.n_heads=4"],
     "model.emb_dim: 130 is not divisible by model.n_heads=4; use a multiple of n_heads (e.g. 128 or 132)"),
    (["model.attention.n_kv_heads=4", "model.n_heads=6"], "model.attention.n_kv_heads: 4 must divide model.n_heads=6"),
    (["model.n_layer=2"], "--set model.n_layer: unknown config path 'model.n_layer' - did you mean 'model.n_layers'?"),
    (["modle.n_layers=2"], "--set modle.n_layers: unknown config path 'modle' - did you mean 'model'?"),
    (["model.n_layers.x=2"], "--set model.n_layers.x: 'model.n_layers' is a single value and has no field 'x'"),
    (["model.dropout=1.5"], "model.dropout: input should be less than 1"),
    (["model.feedforward.hidden_mult=0.001"],
     "model.feedforward: hidden_mult 0.001 x emb_dim 384 leaves no hidden units; raise hidden_mult"),
    (["model.preset=gpt2-smal"], "model.preset: unknown preset 'gpt2-smal' - did you mean 'gpt2-small'?"),
    (["oops"], "override 'oops' must look like dotted.path=value"),
])
def test_config_errors_are_one_clear_line(overrides, expected):
    with pytest.raises(ConfigError) as err:
        load_config({}, overrides)
    message = str(err.value)
    assert expected in message
    assert "\n" not in message


def test_unknown_field_in_file_suggests(write):
    with pytest.raises(ConfigError, match="model.n_layer: unknown field 'n_layer' of section 'model' - did you mean 'n_layers'"):
        load_config(write("c.yaml", "model:\n  n_layer: 2\n"))


def test_unknown_component_is_a_component_error():
    with pytest.raises(ComponentError):
        load_config({"model": {"attention": "flash"}})


def test_malformed_yaml_names_line_and_column(write):
    path = write("bad.yaml", "model:\n  n_layers: 2\n   bad: [\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:3:7: malformed YAML: mapping values are not allowed here"):
        load_config(path)


def test_malformed_toml_and_json(write):
    with pytest.raises(ConfigError, match=r"bad.toml:1:21: malformed TOML: Invalid value"):
        load_config(write("bad.toml", "model = {n_layers = \n"))
    with pytest.raises(ConfigError, match=r"bad.json:1:26: malformed JSON"):
        load_config(write("bad.json", '{"model": {"n_layers": 2,}}'))


def test_unreadable_and_unknown_format(tmp_path, write):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="unknown format '.ini'"):
        load_config(write("c.ini", "[model]\n"))
    with pytest.raises(ConfigError, match="a config must be a mapping"):
        load_config(write("list.yaml", "- 1\n- 2\n"))
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path)


def test_yaml_reads_exponent_floats():
    assert parse_yaml("3e-4") == 3e-4
    assert parse_override("train.lr=1e-3") == ("train.lr", 1e-3)


# --- dump and load ----------------------------------------------------------------------------


def test_dump_load_is_identity_for_presets(write):
    for preset in ["gpt2-small", "gpt2-xl", "nanogpt-baby"]:
        config = load_config({"model": {"preset": preset}})
        again = load_config(write("dumped.yaml", config.to_yaml()))
        assert again == config


names = st.sampled_from(["absolute", "none"])
overrides = st.fixed_dictionaries({
    "model.n_layers": st.integers(1, 48),
    "model.n_heads": st.sampled_from([1, 2, 4, 8]),
    "model.dropout": st.floats(0.0, 0.99, allow_nan=False),
    "model.positional": names,
    "model.attention.qkv_bias": st.booleans(),
    "model.norm.eps": st.floats(1e-12, 1e-1, allow_nan=False),
    "train.lr": st.floats(1e-6, 1.0, allow_nan=False),
    "train.schedule": st.sampled_from(["constant", "cosine"]),
    "seed": st.integers(0, 2**31 - 1),
    "name": st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=12),
})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=overrides, preset=st.sampled_from([None, "gpt2-small", "nanogpt-baby"]))
def test_property_override_dump_load(tmp_path, values, preset):
    sets = [f"{path}={json.dumps(value, ensure_ascii=False)}" for path, value in values.items()]
    sets.append("model.emb_dim=128")
    config = load_config({"model": {"preset": preset}} if preset else {}, sets)
    dumped = config.to_yaml()
    # The override shows in the dump...
    data = parse_yaml(dumped)
    assert data["model"]["n_layers"] == values["model.n_layers"]
    assert data["model"]["positional"]["name"] == values["model.positional"]
    assert data["train"]["lr"] == values["train.lr"]
    assert data["name"] == values["name"]
    # ...and dump -> load is the identity.
    path = tmp_path / "config.yaml"
    path.write_text(dumped, encoding="utf-8")
    assert load_config(path) == config
    assert Config.model_validate(config.to_data()) == config


@pytest.mark.parametrize("model,words", [
    ({"local_layers": [0, 5]}, "5 is not a block of this model"),
    ({"local_layers": [1, 1]}, "names a block twice"),
    ({"local_layers": [0], "local_attention": {"name": "sdpa", "n_kv_heads": 1}},
     "differs from the other layers' 2"),
    ({"local_attention": {"name": "sdpa", "window": 4}}, "model.local_layers is empty"),
])
def test_local_layers_are_checked(model, words):
    base = {"n_layers": 2, "n_heads": 2, "emb_dim": 16, "vocab_size": 10, "context_length": 8}
    with pytest.raises(ConfigError, match=words):
        load_config({"model": {**base, **model}})


def test_local_layers_get_their_own_attention_and_positional():
    import torch

    from llmbricks.core.build import build_model

    base = {"n_layers": 3, "n_heads": 2, "emb_dim": 16, "vocab_size": 10, "context_length": 32,
            "positional": {"name": "rope", "theta": 10000.0}, "dropout": 0.0}
    window = {"local_layers": [0, 2], "local_attention": {"name": "sdpa", "window": 3}}
    rope = {"local_positional": {"name": "rope", "theta": 50.0}}

    def build(model: dict) -> torch.nn.Module:
        torch.manual_seed(0)
        return build_model(load_config({"model": {**base, **model}})).eval()

    plain, windowed, both = build({}), build(window), build({**window, **rope})
    assert [b.attn.params.window for b in windowed.blocks] == [3, None, 3]
    assert both.local_positional.params.theta == 50.0 and both.local_layers == {0, 2}
    assert set(plain.state_dict()) == set(both.state_dict())  # local parts add no weights
    short, long = torch.randint(0, 10, (1, 3)), torch.randint(0, 10, (1, 12))
    with torch.no_grad():
        assert torch.equal(windowed(short), plain(short))  # 3 tokens: the window hides nothing
        assert not torch.allclose(windowed(long), plain(long))
        assert not torch.allclose(both(short), windowed(short))  # the local rope turns otherwise


@pytest.mark.parametrize("name", ["0E0", "1e-3", "2E+5"])
def test_a_name_that_reads_as_an_exponent_float_survives_dump_and_load(tmp_path, name):
    # The loader reads 1e-3 (no dot) as a float, so the dump must quote such a string.
    config = load_config({}, [f"name={json.dumps(name)}"])
    path = tmp_path / "config.yaml"
    path.write_text(config.to_yaml(), encoding="utf-8")
    assert load_config(path).name == name
