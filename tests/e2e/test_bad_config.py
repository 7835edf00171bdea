"""The battery of bad configs: each one fails `config validate` (and `train`) with one clear line.

Issue 16, points 1 and 2: duplicate keys, null/list/scalar sections, nesting, size, aliases,
malformed syntax with ``file:line:column``, non-finite floats, booleans for integers, absurd
sizes and overflowing integers, in every config format and through ``--set``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.bad_inputs import assert_clean_failure, invoke, snapshot
from tests.e2e.train_fixtures import tiny_config


@dataclass(frozen=True)
class Bad:
    """A config file (name and content) and the words its error must name."""

    file: str
    text: str | bytes
    words: tuple[str, ...]
    overrides: tuple[str, ...] = ()


def _nested(levels: int) -> str:
    return "model:\n  preset: " + "[" * levels + "]" * levels + "\n"


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [{', '.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True))

CASES: dict[str, Bad] = {
    # duplicate keys, every format: the key and both lines
    "dup-yaml-field": Bad("c.yaml", "model:\n  n_layers: 2\n  n_layers: 3\n",
                          ("c.yaml:3:3", "duplicate key 'n_layers'", "lines 2 and 3")),
    "dup-yaml-section": Bad("c.yaml", "model: {}\ntrain: {}\nmodel: {}\n",
                            ("c.yaml:3:1", "duplicate key 'model'", "lines 1 and 3")),
    "dup-yaml-flow": Bad("c.yaml", "model: {n_heads: 2, n_heads: 4}\n", ("duplicate key 'n_heads'",)),
    "dup-json-field": Bad("c.json", '{"model": {"n_layers": 2,\n  "n_layers": 3}}',
                          ("c.json:2:3", "duplicate key 'model.n_layers'", "lines 1 and 2")),
    "dup-json-section": Bad("c.json", '{"train": {},\n"seed": 1,\n"train": {}}',
                            ("duplicate key 'train'", "lines 1 and 3")),
    "dup-json-escaped": Bad("c.json", '{"seed": 1,\n"s\\u0065ed": 2}', ("duplicate key 'seed'", "lines 1 and 2")),
    "dup-toml-key": Bad("c.toml", "[train]\nlr = 0.1\nlr = 0.2\n",
                        ("c.toml:3:", "duplicate key 'train.lr'", "lines 2 and 3")),
    "dup-toml-table": Bad("c.toml", "[train]\nlr = 0.1\n[model]\n[train]\n",
                          ("c.toml:4:", "duplicate table 'train'", "lines 1 and 4")),
    "dup-toml-dotted": Bad("c.toml", "model.n_layers = 2\nmodel.n_layers = 3\n",
                           ("duplicate key 'model.n_layers'", "lines 1 and 2")),
    "dup-toml-inline": Bad("c.toml", "model = {n_layers = 2, n_layers = 3}\n",
                           ("c.toml:1:", "duplicate key 'n_layers'", "line 1")),
    # sections that are not mappings
    "section-list": Bad("c.yaml", "model:\n  - n_layers\n", ("model: expected a mapping", "list")),
    "section-scalar": Bad("c.yaml", "train: 5\n", ("train: expected a mapping", "int 5")),
    "section-string-json": Bad("c.json", '{"data": "text"}', ("data: expected a mapping", "str")),
    "section-list-toml": Bad("c.toml", "model = [1, 2]\n", ("model: expected a mapping",)),
    "top-level-list": Bad("c.yaml", "- model\n- train\n", ("a config must be a mapping", "list")),
    "top-level-scalar-json": Bad("c.json", "7", ("a config must be a mapping", "int")),
    # nesting, size, aliases
    "deep-yaml-flow": Bad("c.yaml", _nested(40), ("c.yaml:2:", "nested deeper than 32 levels")),
    "deep-yaml-block": Bad("c.yaml", "".join("  " * i + f"k{i}:\n" for i in range(40)) + "  " * 40 + "1\n",
                           ("nested deeper than 32 levels",)),
    "deep-json": Bad("c.json", '{"model": ' + "[" * 5000 + "]" * 5000 + "}",
                     ("c.json:1:", "nested deeper than 32 levels")),
    "deep-toml-array": Bad("c.toml", "seed = " + "[" * 5000 + "]" * 5000 + "\n",
                           ("c.toml:1:", "nested deeper than 32 levels")),
    "deep-toml-keys": Bad("c.toml", "model" + ".x" * 40 + " = 1\n", ("nested deeper than 32 levels",)),
    "huge-file": Bad("c.yaml", "# " + "x" * (1 << 20) + "\nseed: 1\n", ("larger than 1024 KiB",)),
    "alias-bomb": Bad("c.yaml", BOMB, ("aliases expand to more than",)),
    "alias-loop": Bad("c.yaml", "model: &m {preset: *m}\n", ("alias refers to the collection",)),
    # malformed syntax: file, line and column
    "malformed-yaml": Bad("c.yaml", "model:\n  n_layers: 2\n   bad: [\n",
                          ("c.yaml:3:7", "malformed YAML", "mapping values are not allowed")),
    "malformed-yaml-tab": Bad("c.yaml", "model:\n\tn_layers: 2\n", ("c.yaml:2:1", "malformed YAML")),
    "malformed-json": Bad("c.json", '{"model": {"n_layers": 2,}}', ("c.json:1:26", "malformed JSON")),
    "malformed-toml": Bad("c.toml", "[model]\nn_layers = \n", ("c.toml:2:", "malformed TOML")),
    "not-utf8": Bad("c.yaml", b"seed: 1\nname: \xff\xfe\n", ("not UTF-8", "offset 14")),
    "integer-4301-digits": Bad("c.yaml", "seed: " + "9" * 4301 + "\n", ("c.yaml:1:7", "more than 4300 digits")),
    # non-finite floats in the config and in component params
    "nan-lr-yaml": Bad("c.yaml", "train:\n  lr: .nan\n", ("train.lr", "finite number", "nan")),
    "inf-dropout-yaml": Bad("c.yaml", "model:\n  dropout: -.inf\n", ("model.dropout", "finite number")),
    "nan-weight-decay-json": Bad("c.json", '{"train": {"weight_decay": NaN}}',
                                 ("train.weight_decay", "finite number")),
    "inf-betas-json": Bad("c.json", '{"train": {"betas": [0.9, Infinity]}}', ("train.betas.1", "finite number")),
    "nan-lr-toml": Bad("c.toml", "[train]\nlr = nan\n", ("train.lr", "finite number")),
    "inf-epochs-toml": Bad("c.toml", "[train]\nepochs = inf\n", ("train.epochs", "finite number")),
    "overflow-float-yaml": Bad("c.yaml", "train:\n  grad_clip: 1e400\n", ("train.grad_clip", "finite number")),
    "nan-norm-eps": Bad("c.yaml", "model:\n  norm: {name: layernorm, eps: .nan}\n",
                        ("model.norm.eps", "finite number")),
    "inf-lora-alpha": Bad("c.yaml", "model:\n  adapters: [{name: lora, alpha: .inf}]\n",
                          ("model.adapters[0].alpha", "finite number")),
    "inf-rope-theta": Bad("c.yaml", "model:\n  positional: {name: rope, theta: .inf}\n",
                          ("model.positional.theta", "finite number")),
    "nan-classify-split": Bad("c.yaml", "train:\n  trainer: {name: classify, split: [0.7, .nan, 0.2]}\n",
                              ("train.trainer.split", "finite number")),
    "nan-val-fraction": Bad("c.yaml", "data:\n  val_fraction: .nan\n", ("data.val_fraction", "finite")),
    # booleans where numbers are meant
    "bool-n-layers": Bad("c.yaml", "model:\n  n_layers: true\n", ("model.n_layers", "expected an integer", "true")),
    "bool-seed": Bad("c.json", '{"seed": false}', ("seed", "expected an integer", "false")),
    "bool-lr": Bad("c.toml", "[train]\nlr = true\n", ("train.lr", "expected a number")),
    "bool-betas": Bad("c.yaml", "train:\n  betas: [true, 0.9]\n", ("train.betas", "boolean")),
    "bool-kv-heads": Bad("c.yaml", "model:\n  attention: {name: sdpa, n_kv_heads: true}\n",
                         ("model.attention.n_kv_heads", "expected an integer")),
    "bool-t5-buckets": Bad("c.yaml", "model:\n  positional: {name: t5, num_buckets: true}\n",
                           ("model.positional.num_buckets", "expected an integer")),
    "bool-vocab": Bad("c.yaml", "model:\n  vocab_size: true\n", ("model.vocab_size", "expected an integer")),
    # sizes out of range, overflowing integers
    "zero-heads": Bad("c.yaml", "model:\n  n_heads: 0\n", ("model.n_heads", "greater than or equal to 1")),
    "negative-batch": Bad("c.yaml", "train:\n  batch_size: -4\n", ("train.batch_size", "greater than or equal to 1")),
    "absurd-emb-dim": Bad("c.yaml", "model:\n  emb_dim: 1000000000\n", ("model.emb_dim", "less than or equal to")),
    "absurd-context": Bad("c.yaml", "model:\n  context_length: 10000000000\n", ("model.context_length",)),
    "absurd-vocab": Bad("c.yaml", "model:\n  vocab_size: 100000000000\n", ("model.vocab_size",)),
    "overflow-seed": Bad("c.yaml", f"seed: {2**70}\n", ("seed", "less than or equal to 9223372036854775807")),
    "negative-seed": Bad("c.yaml", "seed: -1\n", ("seed", "greater than or equal to 0")),
    "overflow-steps": Bad("c.yaml", f"train:\n  max_steps: {10**30}\n", ("train.max_steps", "less than or equal")),
    "overflow-grad-accum": Bad("c.json", json.dumps({"train": {"grad_accum": 2**64}}), ("train.grad_accum",)),
    "absurd-lora-rank": Bad("c.yaml", "model:\n  adapters: [{name: lora, r: 100000000}]\n",
                            ("model.adapters[0].r", "less than or equal")),
    "beta-one": Bad("c.yaml", "train:\n  betas: [1.0, 0.999]\n", ("train.betas.0", "less than 1")),
    "zero-eps": Bad("c.yaml", "model:\n  norm: {name: rmsnorm, eps: 0}\n", ("model.norm.eps", "greater than 0")),
    "ablation-seeds-overflow": Bad("c.yaml", f"seed: {2**63 - 1}\nablation:\n  seeds: 2\n",
                                   ("runs past the largest seed",)),
    # unknown keys and wrong types
    "unknown-field": Bad("c.yaml", "model:\n  n_layer: 2\n", ("unknown field 'n_layer'", "did you mean 'n_layers'")),
    "unknown-section": Bad("c.yaml", "modle:\n  n_layers: 2\n", ("unknown field 'modle'",)),
    "wrong-type-int": Bad("c.yaml", "model:\n  n_layers: two\n", ("model.n_layers", "valid integer")),
    "wrong-type-float": Bad("c.yaml", "train:\n  lr: [0.1]\n", ("train.lr", "valid number")),
    # --set, on a valid file
    "set-lr-nan": Bad("c.yaml", "seed: 1\n", ("train.lr", "finite number"), ("train.lr=nan",)),
    "set-lr-inf": Bad("c.yaml", "seed: 1\n", ("train.lr", "finite number"), ("train.lr=.inf",)),
    "set-layers-true": Bad("c.yaml", "seed: 1\n", ("model.n_layers", "expected an integer"),
                           ("model.n_layers=true",)),
    "set-section-scalar": Bad("c.yaml", "seed: 1\n", ("model: expected a mapping",), ("model=5",)),
    "set-seed-overflow": Bad("c.yaml", "seed: 1\n", ("seed", "less than or equal"), (f"seed={2**64}",)),
    "set-deep": Bad("c.yaml", "seed: 1\n", ("--set name:1:", "nested deeper than 32"),
                    ("name=" + "[" * 50 + "]" * 50,)),
    "set-dup-key": Bad("c.yaml", "seed: 1\n", ("--set model.norm", "duplicate key 'eps'"),
                       ("model.norm={name: layernorm, eps: 1, eps: 2}",)),
    "set-param-nan": Bad("c.yaml", "seed: 1\n", ("model.feedforward.hidden_mult", "finite"),
                         ("model.feedforward.hidden_mult=nan",)),
}


def _write(tmp_path: Path, case: Bad) -> Path:
    path = tmp_path / case.file
    if isinstance(case.text, bytes):
        path.write_bytes(case.text)
    else:
        path.write_text(case.text, encoding="utf-8")
    return path


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_config_validate_refuses(tmp_path: Path, case: Bad) -> None:
    path = _write(tmp_path, case)
    before = snapshot(tmp_path)
    args = [a for o in case.overrides for a in ("--set", o)]
    result = invoke("config", "validate", str(path), *args, cwd=tmp_path)
    assert_clean_failure(result, 2, *case.words)
    assert snapshot(tmp_path) == before


TRAIN_CASES = {
    "train-lr-nan": ("train.lr=nan", ("train.lr", "finite number")),
    "train-lr-inf": ("train.lr=inf", ("train.lr", "finite number")),
    "train-layers-true": ("model.n_layers=true", ("model.n_layers", "expected an integer")),
    "train-seed-overflow": (f"seed={2**70}", ("seed", "less than or equal")),
    "train-steps-overflow": (f"train.max_steps={10**30}", ("train.max_steps",)),
    "train-data-list": ("data=[1]", ("data: expected a mapping",)),
}


@pytest.mark.parametrize("override,words", list(TRAIN_CASES.values()), ids=list(TRAIN_CASES))
def test_train_refuses_before_writing(tmp_path: Path, override: str, words: tuple[str, ...]) -> None:
    config = tiny_config(tmp_path)
    before = snapshot(tmp_path)
    result = invoke("train", str(config), "--set", override, cwd=tmp_path,
                    env={"LLMBRICKS_CACHE_DIR": str(tmp_path / "cache")})
    assert_clean_failure(result, 2, *words)
    assert snapshot(tmp_path) == before  # no run directory, no cache


def test_train_refuses_a_duplicate_key_file(tmp_path: Path) -> None:
    config = tiny_config(tmp_path)
    config.write_text(config.read_text(encoding="utf-8") + "seed: 8\n", encoding="utf-8")
    before = snapshot(tmp_path)
    result = invoke("train", str(config), cwd=tmp_path, env={"LLMBRICKS_CACHE_DIR": str(tmp_path / "cache")})
    assert_clean_failure(result, 2, "duplicate key 'seed'")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("text,overrides", [
    ("model:\ntrain: null\n", ()),
    ("", ()),
    ("model: {n_layers: 2}\n", ("model=null",)),
    ("seed: 123\n", ("train=",)),
], ids=["empty-section", "empty-file", "set-model-null", "set-train-empty"])
def test_a_null_section_means_the_defaults(tmp_path: Path, text: str, overrides: tuple[str, ...]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    args = [a for o in overrides for a in ("--set", o)]
    shown = invoke("config", "show", str(path), *args)
    default = invoke("config", "new")
    assert shown.code == 0, shown.stderr
    assert shown.stdout == default.stdout


def test_plain_aliases_and_merge_keys_still_load(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("data: {stride: &s 64}\nmodel:\n  <<: {n_layers: 2, n_heads: 2}\n"
                    "  context_length: *s\n  emb_dim: 64\n", encoding="utf-8")
    result = invoke("config", "validate", str(path))
    assert result.code == 0, result.stderr
    assert "2 layers, 64 dims, 2 heads, context 64" in result.stdout
