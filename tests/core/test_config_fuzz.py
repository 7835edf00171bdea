"""Fuzzing the config (issue 16, point 10): whatever a user writes, loading either succeeds (and
then the model builds and trains one tiny step) or fails with a one-line ``ConfigError``.

Configs are generated from the schema itself: every field of every section, and every parameter
of every registered component, gets either a plausible value or a bad one (out of range, wrong
type, non-finite, a boolean for a number, deeply nested). Files are then written in YAML, JSON or
TOML and mutated (a key written twice, a value nested past any real depth, the text cut short),
and random ``--set`` paths and values go through the CLI in process. Derandomized, so CI
reproduces every example; bounded so the file runs in well under a minute.
"""

from __future__ import annotations

import json
import math
import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from llmbricks.core.component import ComponentSpec
from llmbricks.core.config import (
    COMPONENT_FIELDS,
    COMPONENT_LIST_FIELDS,
    SECTIONS,
    load_config,
    resolve_config,
)
from llmbricks.core.config_io import read_config_file
from llmbricks.core.errors import ConfigError
from llmbricks.core.registry import get_registry
from llmbricks.core.tasks.smoke import smoke_test
from tests.e2e.bad_inputs import invoke

FUZZ = settings(max_examples=80, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])

#: The model's shape stays tiny when valid, so a smoke build takes milliseconds.
SHAPE = {
    "n_layers": st.integers(1, 2),
    "emb_dim": st.sampled_from([8, 16, 32]),
    "n_heads": st.sampled_from([1, 2, 4]),
    "context_length": st.integers(1, 32),
    "vocab_size": st.one_of(st.integers(2, 64), st.just("auto")),
}
#: Bad values that are still refused quickly: never a valid huge size.
BAD = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, True, False, None, 0, -1, -(2**70), 2**70,
                     10**30, 2**63, 1e400, "", "two", "nan", [], {}, [1, 2], {"a": 1}, 0.5, -0.0]),
    st.text(max_size=8),
    st.recursive(st.integers(0, 3), lambda inner: st.lists(inner, max_size=2), max_leaves=4),
    st.integers(0, 50).map(lambda depth: _nest(depth)),
)


def _nest(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def _members(annotation: Any) -> list[Any]:
    origin = get_origin(annotation)
    if origin is Annotated:
        return _members(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return [m for a in get_args(annotation) for m in _members(a)]
    return [annotation]


def _plausible(annotation: Any) -> st.SearchStrategy[Any]:
    """A value of the field's type, not always within its bounds (the schema sorts that out)."""
    options: list[st.SearchStrategy[Any]] = []
    for member in _members(annotation):
        origin = get_origin(member)
        if member is bool:
            options.append(st.booleans())
        elif member is int:
            options.append(st.integers(0, 64))
        elif member is float:
            options.append(st.floats(0.0, 2.0, allow_nan=False))
        elif member is str:
            options.append(st.text("abc_", max_size=6))
        elif member is type(None):
            options.append(st.none())
        elif origin is Literal:
            options.append(st.sampled_from(get_args(member)))
        elif origin in (tuple, list):
            args = [a for a in get_args(member) if a is not Ellipsis] or [int]
            options.append(st.lists(_plausible(args[0]), min_size=len(args), max_size=max(3, len(args))))
    return st.one_of(options) if options else st.just(None)


def _field_value(name: str, annotation: Any) -> st.SearchStrategy[Any]:
    if name == "preset":
        return st.one_of(st.none(), st.sampled_from(get_registry().preset_names()), BAD)
    good = SHAPE[name] if name in SHAPE else _plausible(annotation)
    return st.one_of(good, good, good, BAD)


@st.composite
def component(draw: st.DrawFn, kind: str) -> Any:
    """A spec of this kind: a registered name (now and then an unknown one) with drawn params."""
    registry = get_registry()
    name = draw(st.sampled_from([*registry.names(kind), "no_such_part"]))
    if name == "no_such_part" or draw(st.booleans()):
        return name
    params: dict[str, Any] = {"name": name}
    fields = registry.get(kind, name).Params.model_fields
    for pname in draw(st.lists(st.sampled_from(sorted(fields)), max_size=3, unique=True)) if fields else []:
        params[pname] = draw(_field_value(pname, fields[pname].annotation))
    if draw(st.integers(0, 9)) == 0:
        params["not_a_param"] = 1
    return params


#: Kinds kept out of the model slots: they read files or data (tested elsewhere).
SKIPPED = {("model", "tokenizer"), ("data", "source"), ("data", "prompt")}


@st.composite
def raw_configs(draw: st.DrawFn) -> dict[str, Any]:
    """A raw config: some fields of some sections, each plausible or bad; sections now and then bad."""
    raw: dict[str, Any] = {}
    for section, model in SECTIONS.items():
        if section == "ablation" and draw(st.integers(0, 3)):
            continue
        roll = draw(st.integers(0, 19))
        if roll == 0:
            raw[section] = draw(st.sampled_from([None, [], 5, "x", [{"a": 1}]]))
            continue
        fields: dict[str, Any] = {}
        names = draw(st.lists(st.sampled_from(sorted(model.model_fields)), max_size=6, unique=True))
        if section == "model":  # the shape is always written, so a valid model stays tiny
            names = sorted(set(names) | set(SHAPE))
        for name in names:
            if (section, name) in SKIPPED:
                continue
            if (section, name) in COMPONENT_FIELDS:
                fields[name] = draw(st.one_of(component(COMPONENT_FIELDS[section, name]), BAD))
            elif (section, name) in COMPONENT_LIST_FIELDS:
                kind = COMPONENT_LIST_FIELDS[section, name]
                fields[name] = draw(st.lists(component(kind), max_size=2))
            elif name == "grid":
                fields[name] = draw(st.dictionaries(st.sampled_from(["model.n_layers", "train.lr", "nope"]),
                                                    st.lists(BAD, max_size=2), max_size=2))
            else:
                fields[name] = draw(_field_value(name, model.model_fields[name].annotation))
        if draw(st.integers(0, 9)) == 0:
            fields["not_a_field"] = 1
        raw[section] = fields
    if draw(st.booleans()):
        raw["seed"] = draw(_field_value("seed", int))
    return raw


def _one_line(exc: ConfigError) -> str:
    message = str(exc)
    assert message and "\n" not in message, repr(message)
    return message


def _tiny(config: Any) -> bool:
    m = config.model
    return m.emb_dim <= 64 and m.n_layers <= 2 and m.context_length <= 64 and \
        (m.vocab_size == "auto" or m.vocab_size <= 4096)


@FUZZ
@given(raw=raw_configs())
def test_generated_configs_load_and_build_or_refuse_in_one_line(raw: dict[str, Any]) -> None:
    try:
        config = resolve_config(raw)
    except ConfigError as exc:
        _one_line(exc)
        return
    if not _tiny(config):  # only the defaults (a null model section) are this big
        assert "model" not in raw or not raw["model"], config.model
        return
    result = smoke_test(config, seq_len=8)
    assert math.isfinite(result.loss)


# --- files: every format, mutated ----------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (int, float, str)):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value if v is not None) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()
                               if v is not None) + "}"
    return '""'


def _to_toml(raw: dict[str, Any]) -> str:
    """TOML has no null: a ``None`` is left out (as a TOML user would)."""
    top = [f"{k} = {_toml_value(v)}" for k, v in raw.items() if not isinstance(v, dict) and v is not None]
    tables = [f"[{k}]\n" + "".join(f"{json.dumps(str(f))} = {_toml_value(x)}\n" for f, x in v.items()
                                   if x is not None)
              for k, v in raw.items() if isinstance(v, dict)]
    return "\n".join(top) + "\n" + "\n".join(tables)


def _serialize(raw: dict[str, Any], suffix: str) -> str:
    if suffix == ".json":
        return json.dumps(raw, indent=1)
    if suffix == ".toml":
        return _to_toml(raw)
    return yaml.safe_dump(raw, sort_keys=False)


@st.composite
def mutated_files(draw: st.DrawFn) -> tuple[str, str, str]:
    suffix = draw(st.sampled_from([".yaml", ".json", ".toml"]))
    text = _serialize(draw(raw_configs()), suffix)
    lines = text.splitlines(keepends=True)
    how = draw(st.sampled_from(["none", "duplicate", "deep", "cut", "garbage"]))
    if how == "duplicate" and lines:
        i = draw(st.integers(0, len(lines) - 1))
        lines.insert(i, lines[i])
    elif how == "deep" and lines:
        i = draw(st.integers(0, len(lines) - 1))
        depth = draw(st.integers(30, 200))
        lines.insert(i, ('"x": ' if suffix == ".json" else "x = " if suffix == ".toml" else "x: ")
                     + "[" * depth + "]" * depth + ("," if suffix == ".json" else "") + "\n")
    text = "".join(lines)
    if how == "cut":
        text = text[:draw(st.integers(0, len(text)))]
    elif how == "garbage":
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(["{", "]", ":", "\"", "&a", "*b", "\t", "= =", "\\"])) + text[at:]
    return suffix, how, text


@FUZZ
@given(case=mutated_files())
def test_config_files_in_every_format_load_or_refuse_in_one_line(tmp_path_factory: Any,
                                                                  case: tuple[str, str, str]) -> None:
    suffix, _, text = case
    path = tmp_path_factory.mktemp("fuzz") / f"c{suffix}"
    path.write_text(text, encoding="utf-8")
    try:
        read_config_file(path)
        load_config(path)
    except ConfigError as exc:
        message = _one_line(exc)
        if "malformed" in message:
            assert message.startswith(f"{path}:") and message.split(":")[1].isdigit(), message


# --- the CLI: random --set paths and values --------------------------------------------------


def _paths() -> list[str]:
    paths = ["seed", "name", "model", "train", "data", "ablation", "nope", "model.nope", "seed.x",
             "model.attention.n_kv_heads.deeper", "", ".", "model..n_layers"]
    for section, model in SECTIONS.items():
        for name, field in model.model_fields.items():
            paths.append(f"{section}.{name}")
            if (section, name) in COMPONENT_FIELDS:
                paths.append(f"{section}.{name}.name")
                registry = get_registry()
                for cname in registry.names(COMPONENT_FIELDS[section, name]):
                    paths += [f"{section}.{name}.{p}" for p in registry.get(
                        COMPONENT_FIELDS[section, name], cname).Params.model_fields]
            elif isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                paths += [f"{section}.{name}.{p}" for p in field.annotation.model_fields]
    return sorted(set(paths))


VALUES = st.one_of(
    st.sampled_from(["nan", ".nan", "inf", "-.inf", ".inf", "true", "false", "null", "", "-1", "0", "1",
                     "2", "0.5", "1e400", str(2**70), str(10**30), "[1, 2]", "[]", "{}", "{a: 1}",
                     "{name: rope}", "{name: lora, r: true}", "{x: 1, x: 2}", "rope", "sdpa", "'quoted",
                     "[" * 40 + "]" * 40, "&a [*a]", "!!python/object:os.system ls", "9" * 5000,
                     "a: b: c", "- x", "{[}", "\t"]),
    st.text(max_size=10),
)


@pytest.fixture(scope="module")
def base_config(tmp_path_factory: Any) -> Path:
    path = tmp_path_factory.mktemp("fuzz-cli") / "base.yaml"
    path.write_text("model: {n_layers: 1, emb_dim: 16, n_heads: 2, context_length: 16, vocab_size: 64}\n"
                    "train: {max_steps: 10}\n", encoding="utf-8")
    return path


@settings(FUZZ, max_examples=60)
@given(sets=st.lists(st.tuples(st.sampled_from(_paths()), VALUES), min_size=1, max_size=3))
def test_random_set_overrides_through_the_cli(base_config: Path, sets: list[tuple[str, str]]) -> None:
    args = [a for path, value in sets for a in ("--set", f"{path}={value}")]
    result = invoke("config", "validate", str(base_config), *args)
    assert result.code in (0, 2), (result.code, result.stderr)
    if result.code == 2:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(("error:", "Error:")), result.stderr
        assert "--debug" not in lines[0], lines[0]
    else:
        assert "valid" in result.stdout


def test_component_spec_parse_is_total() -> None:
    """A spec of any shape parses or raises ``ValueError`` (the registry turns that into one line)."""
    for value in [None, 1, 1.5, True, [], ["a"], {}, {"name": 1}, {"name": ""}, {"name": "x", 1: 2}]:
        with pytest.raises(ValueError):
            ComponentSpec.parse(value)
