"""Unit tests of the config's bounds (issue 16, points 1 and 2): the reader and the schema."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
from pydantic import Field, ValidationError

from llmbricks.core.component import ParamsModel
from llmbricks.core.config import MAX_SEED, load_config
from llmbricks.core.config_io import MAX_CONFIG_BYTES, MAX_DEPTH, parse_yaml, read_config_file
from llmbricks.core.errors import ConfigError


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- the reader -------------------------------------------------------------------------------


@pytest.mark.parametrize("name,text,message", [
    ("c.yaml", "a: 1\nb: 2\na: 3\n", r"c.yaml:3:1: duplicate key 'a' \(lines 1 and 3\)"),
    ("c.yaml", "a: {x: 1, x: 2}\n", r"c.yaml:1:11: duplicate key 'x' \(twice on line 1\)"),
    ("c.json", '{"a": {"x": 1,\n"y": 2,\n"x": 3}}', r"c.json:3:1: duplicate key 'a.x' \(lines 1 and 3\)"),
    ("c.toml", "[a]\nx = 1\n\n[b]\ny = 2\n[a]\n", r"c.toml:6:\d+: duplicate table 'a' \(lines 1 and 6\)"),
    ("c.toml", '[a]\n"x" = 1\nx = 2\n', r"c.toml:3:\d+: duplicate key 'a.x' \(lines 2 and 3\)"),
])
def test_duplicate_keys_name_the_key_and_both_lines(tmp_path: Path, name: str, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        read_config_file(_write(tmp_path, name, text))


def test_a_toml_duplicate_after_a_multiline_string_is_still_found(tmp_path: Path) -> None:
    text = 'a = """\nb = 1\n"""\nb = 2\nb = 3\n'
    with pytest.raises(ConfigError, match=r"duplicate key 'b' \(lines 4 and 5\)"):
        read_config_file(_write(tmp_path, "c.toml", text))


def test_merge_keys_may_repeat_a_merged_key(tmp_path: Path) -> None:
    path = _write(tmp_path, "c.yaml", "base: &b {x: 1, y: 2}\nm:\n  <<: *b\n  x: 3\n")
    assert read_config_file(path)["m"] == {"x": 3, "y": 2}


@pytest.mark.parametrize("name,text", [
    ("c.yaml", "a: " + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)),
    ("c.json", '{"a": ' + "{\"b\": " * MAX_DEPTH + "1" + "}" * MAX_DEPTH + "}"),
    ("c.toml", "a = " + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)),
])
def test_nesting_past_the_limit_is_refused(tmp_path: Path, name: str, text: str) -> None:
    with pytest.raises(ConfigError, match=rf"{name}:1:\d+: nested deeper than {MAX_DEPTH} levels"):
        read_config_file(_write(tmp_path, name, text))


def test_nesting_at_the_limit_loads(tmp_path: Path) -> None:
    depth = MAX_DEPTH - 1  # the top-level mapping is one level
    path = _write(tmp_path, "c.yaml", "a: " + "[" * depth + "]" * depth)
    assert read_config_file(path)["a"] is not None


def test_extreme_nesting_is_refused_quickly_without_recursion(tmp_path: Path) -> None:
    for name, text in [("c.yaml", "[" * 200_000), ("c.json", "[" * 200_000), ("c.toml", "a = " + "[" * 200_000)]:
        with pytest.raises(ConfigError, match="nested deeper"):
            read_config_file(_write(tmp_path, name, text))


def test_alias_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    levels = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 10))
    path = _write(tmp_path, "c.yaml", "l0: &l0 [lol]\n" + levels)
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="aliases expand to more than"):
        read_config_file(path)
    assert time.perf_counter() - start < 2.0


def test_a_file_above_the_cap_is_not_parsed(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(b"{" * (MAX_CONFIG_BYTES + 1))  # would be a syntax error if parsed
    with pytest.raises(ConfigError, match="larger than 1024 KiB"):
        read_config_file(path)


def test_a_byte_order_mark_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_bytes(b"\xef\xbb\xbf" + b'{"seed": 5}')
    assert read_config_file(path) == {"seed": 5}


@pytest.mark.parametrize("text,where", [
    ("a: [1,\n", "x:2:1"),
    ("a: 1\n b: 2\n", "x:2:3"),
    ("a: \x1b\n", "x:1:4"),
    ("a: *nope\n", "x:1:4"),
])
def test_yaml_errors_name_line_and_column(text: str, where: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{where}: malformed YAML"):
        parse_yaml(text, "x")


def test_toml_errors_at_the_end_of_the_document_name_its_position(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"c.toml:2:7: malformed TOML: Unclosed array"):
        read_config_file(_write(tmp_path, "c.toml", "a = 1\nb = [1"))


# --- the schema -------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [
    {"model": None}, {"train": None, "data": None}, {"ablation": None}, {},
])
def test_null_sections_are_the_defaults(raw: dict) -> None:
    assert load_config(raw) == load_config({})


def test_set_null_resets_a_section() -> None:
    config = load_config({"model": {"n_layers": 2}}, ["model=null"])
    assert config.model.n_layers == load_config({}).model.n_layers


@pytest.mark.parametrize("value", [[1], 5, "model", 1.5, True])
def test_a_section_that_is_not_a_mapping_is_refused(value: object) -> None:
    with pytest.raises(ConfigError, match="^train: expected a mapping of fields"):
        load_config({"train": value})


def test_set_on_a_component_that_is_a_scalar_starts_afresh() -> None:
    config = load_config({"model": {"attention": 5}}, ["model.attention.name=sdpa"])
    assert config.model.attention.name == "sdpa"


@pytest.mark.parametrize("path,value", [
    ("train.lr", math.nan), ("train.lr", math.inf), ("train.min_lr", -math.inf),
    ("train.weight_decay", math.nan), ("train.grad_clip", math.inf), ("train.epochs", math.inf),
    ("model.dropout", math.nan), ("data.val_fraction", math.nan),
])
def test_non_finite_floats_are_refused(path: str, value: float) -> None:
    section, field = path.split(".")
    with pytest.raises(ConfigError, match=rf"^{path}: input should be a finite number"):
        load_config({section: {field: value}})


@pytest.mark.parametrize("path,value", [
    ("model.n_layers", True), ("model.emb_dim", False), ("train.batch_size", True),
    ("train.max_steps", True), ("train.lr", True), ("model.vocab_size", True),
])
def test_booleans_are_not_numbers(path: str, value: bool) -> None:
    section, field = path.split(".")
    with pytest.raises(ConfigError, match=rf"^{path}: expected (an integer|a number), got {str(value).lower()}"):
        load_config({section: {field: value}})


def test_booleans_stay_booleans_where_meant() -> None:
    config = load_config({"data": {"shuffle": False}, "model": {"attention": {"name": "sdpa", "qkv_bias": True}}})
    assert config.data.shuffle is False and config.model.attention.params["qkv_bias"] is True


def test_seed_bounds() -> None:
    assert load_config({"seed": MAX_SEED}).seed == MAX_SEED
    for seed in (MAX_SEED + 1, -1, True):
        with pytest.raises(ConfigError, match="^seed: "):
            load_config({"seed": seed})


def test_ablation_seeds_must_stay_within_the_seed_range() -> None:
    with pytest.raises(ConfigError, match="runs past the largest seed"):
        load_config({"seed": MAX_SEED, "ablation": {"seeds": 2}})


def test_betas_lie_in_zero_one() -> None:
    with pytest.raises(ConfigError, match=r"^train.betas.1: input should be less than 1"):
        load_config({"train": {"betas": [0.9, 1.0]}})


def test_params_of_any_plugin_get_the_same_rules() -> None:
    """A third-party ``Params`` deriving from ``ParamsModel`` is finite and bool-free too."""

    class Params(ParamsModel):
        width: int = Field(4, ge=1)
        scale: float = 1.0
        shape: tuple[int, int] = (1, 2)
        flag: bool = False
        choice: int | bool = 0

    for bad in ({"width": True}, {"scale": math.nan}, {"scale": -math.inf}, {"shape": [1, True]}):
        with pytest.raises(ValidationError):
            Params.model_validate(bad)
    assert Params.model_validate({"flag": True, "choice": True}).choice is True


def test_errors_quote_huge_inputs_in_one_short_line() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({"model": {"n_layers": "x\n" * 10_000}})
    message = str(caught.value)
    assert "\n" not in message and len(message) < 200
