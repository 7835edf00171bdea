"""Plugins written against the plugin docs of 2026-12-06 still load, conform and train, unchanged.

Two frozen packages stand in for third-party code nobody will update:

- ``tests/fixtures/legacy_plugin/llmbricks_legacy``: one component of every module kind (plus a
  tokenizer) in the contract of that time: attention and blocks take ``forward(x, positional,
  pos, cache)``, the model defines no ``layout()``, attention no ``residual_projections()``, heads
  no ``output_weight()``;
- ``tests/fixtures/frozen_example_plugin``: ``examples/plugin`` (ScaleNorm) as it was then.

Where a contract changed, the old form still works and says so with a ``DeprecationWarning``;
where it did not, nothing warns. The last section covers older forms that once slipped through
silently: a positional overriding ``context``, a head tied through ``proj``, a model cropped to
its ``positional``'s table, a sequence head's ``params.num_classes``.
"""

from __future__ import annotations

import importlib
import sys
import types
import warnings
from collections.abc import Iterator
from fnmatch import fnmatchcase
from pathlib import Path

import click
import pytest
import torch
from torch import nn

import llmbricks
from llmbricks.core.build import (
    adapter_state_names,
    build_model,
    build_tokenizer,
    load_tokenizer,
    summarize,
)
from llmbricks.core.config import load_config
from llmbricks.core.interfaces import PositionalEncoding, PositionContext
from llmbricks.core.tasks.generation import generate_ids
from llmbricks.core.train.trainable import apply_trainable
from llmbricks.testing import check_component
from tests.conftest import ROOT
from tests.e2e.train_fixtures import corpus

FIXTURES = ROOT / "tests" / "fixtures"
LEGACY_DIR = FIXTURES / "legacy_plugin"
EXAMPLE_DIRS = {"frozen": FIXTURES / "frozen_example_plugin", "current": ROOT / "examples" / "plugin"}

TINY = {"vocab_size": 256, "context_length": 16, "emb_dim": 16, "n_layers": 2, "n_heads": 2,
        "dropout": 0.0}
#: Every slot filled by the legacy plugin.
ALL_LEGACY = {"tokenizer": "bytes", "positional": {"name": "window", "window": 8},
              "norm": "legacy_scalenorm", "attention": "legacy", "block": "legacy",
              "arch": "legacy", "head": "legacy_lm"}
#: The legacy kinds whose contract did not change, with the built-in attention, block and model.
UNCHANGED_KINDS = {"tokenizer": "bytes", "positional": {"name": "window", "window": 8},
                   "norm": "legacy_scalenorm", "head": "legacy_lm"}
#: What LoRA's default targets were before they meant "every Linear of layout().blocks".
OLD_LORA_GLOBS = ("*.attn.*_proj", "*.ff.*")
DEPRECATIONS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def fresh_import(monkeypatch) -> Iterator:
    """``fresh_import(package, folder)``: import ``package`` from ``folder`` anew.

    Class-definition warnings fire again, and the frozen and the current ``llmbricks_scalenorm``
    (one package name, two folders) never meet. ``sys.modules`` is put back afterwards.
    """
    saved: dict[str, types.ModuleType] = {}

    def load(package: str, folder: Path) -> types.ModuleType:
        for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
            saved.setdefault(name, sys.modules.pop(name))
        monkeypatch.syspath_prepend(str(folder))
        module = importlib.import_module(package)
        assert Path(module.__file__).is_relative_to(folder)
        return module

    yield load
    for name in [n for n in sys.modules if any(n == p or n.startswith(p + ".")
                                                for p in ("llmbricks_legacy", "llmbricks_scalenorm"))]:
        del sys.modules[name]
    sys.modules.update(saved)


@pytest.fixture
def legacy(fresh_import) -> types.ModuleType:
    return fresh_import("llmbricks_legacy", LEGACY_DIR)


@pytest.fixture
def registry(legacy, registry_with):
    """The built-ins plus the legacy plugin (strict: a load failure raises)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the class definitions: tested below
        return registry_with({"legacy": legacy}, strict=True)


def config_for(registry, **model):
    return load_config({"model": {**TINY, **model}}, registry=registry)


def built(registry, **model) -> llmbricks.Model:
    torch.manual_seed(0)
    return build_model(config_for(registry, **model), registry)


def deprecations(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, DEPRECATIONS)]


def trained(model: nn.Module) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


def train_briefly(registry, tmp_path: Path, model: dict, steps: int = 20, **train):
    """Train ``model`` (fields of the model section) for ``steps`` on a tiny corpus, in process."""
    from llmbricks.core.train.session import train as run_training

    text = corpus(tmp_path / "corpus.txt", chars=3000)
    config = load_config({
        "name": "legacy", "seed": 3,
        "model": {**TINY, "vocab_size": "auto", **model},
        "data": {"source": {"name": "text", "path": str(text)}},
        "train": {"max_steps": steps, "batch_size": 4, "lr": 3e-3, "eval_every": steps,
                  "eval_batches": 2, "loggers": [], **train}}, registry=registry)
    result = run_training(config, out=tmp_path / "run", registry=registry)
    assert result.status == "completed" and result.step == steps
    return result


# --- loading and conformance ------------------------------------------------------------------


LEGACY_COMPONENTS = [("tokenizer", "bytes"), ("positional", "window"), ("norm", "legacy_scalenorm"),
                     ("attention", "legacy"), ("block", "legacy"), ("model", "legacy"),
                     ("head", "legacy_lm"), ("head", "legacy_last")]


def test_the_legacy_plugin_loads_every_component_and_its_preset(registry):
    record = registry.plugins["legacy"]
    assert record.error is None
    assert sorted(record.components) == sorted(LEGACY_COMPONENTS)
    assert record.presets == ["legacy-tiny"]
    assert load_config({"model": {"preset": "legacy-tiny"}}, registry=registry).model.arch.name == "legacy"


@pytest.mark.parametrize("kind,name", LEGACY_COMPONENTS, ids=[f"{k}-{n}" for k, n in LEGACY_COMPONENTS])
def test_every_legacy_component_passes_the_conformance_kit(registry, kind, name):
    params = {"window": 3} if name == "window" else None  # a window shorter than the context
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        passed = set(check_component(kind, name, registry, params=params))
    assert {"summary", "defaults", "strict params"} <= passed
    if kind == "tokenizer":
        assert {"id range", "round trip", "save/load"} <= passed
    elif name == "legacy_last":  # one output per sequence
        assert {"sequence shape", "lengths", "padding ignored", "seeded determinism",
                "state_dict round trip"} <= passed
    else:
        assert {"causal", "cache equivalence", "state_dict round trip", "seeded determinism"} <= passed


@pytest.mark.parametrize("positional", ["rope", "alibi", {"name": "window", "window": 5}],
                         ids=["rope", "alibi", "window"])
def test_the_old_form_stack_computes_what_the_builtins_compute(registry, positional):
    """Old attention + old block + old model, with the same weights as gpt/gpt/mha: same logits.

    ``rope`` reaches the old attention's ``positional.rotate(q, k, pos)`` through the wrapper,
    ``alibi`` and ``window`` its ``pos.bias``; a cached pass equals the full one.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old = built(registry, positional=positional, attention="legacy", block="legacy",
                    arch="legacy").eval()
        new = built(registry, positional=positional, attention="mha").eval()
        renamed = {k.replace(".n1.", ".attn_norm.").replace(".n2.", ".ff_norm."): v
                   for k, v in old.state_dict().items()}
        new.load_state_dict(renamed)
        ids = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            expected = new(ids)
            assert torch.allclose(old(ids), expected, atol=1e-5)
            cache = old.new_cache(2, 16)
            steps = [old(ids[:, :7], cache=cache)] + [old(ids[:, t:t + 1], cache=cache)
                                                      for t in range(7, 16)]
        assert torch.allclose(torch.cat(steps, dim=1), expected, atol=1e-4)


# --- what warns and what does not -------------------------------------------------------------


def test_old_attention_and_block_signatures_warn_once_when_defined(legacy, registry_with):
    with pytest.warns(DeprecationWarning) as caught:
        registry_with({"legacy": legacy}, strict=True)  # the hook imports the components
    messages = deprecations(caught.list)
    assert len(messages) == 2, messages
    assert "LegacyAttention.forward takes (x, positional, pos, cache)" in messages[0]
    assert "LegacyBlock.forward takes (x, positional, pos, cache)" in messages[1]


def test_old_attention_warns_that_it_declares_no_residual_projections(registry):
    with pytest.warns(DeprecationWarning, match="attention 'legacy' does not define "
                      "residual_projections\\(\\); using its layers named out_proj"):
        model = built(registry, attention="legacy")  # gpt's init asks for them
    attn = model.blocks[0].attn
    assert attn.out_proj.weight.std() < 0.012 < attn.q_proj.weight.std()  # out_proj was scaled
    with warnings.catch_warnings(record=True) as caught:  # called the new way by gpt's block:
        warnings.simplefilter("always")                   # the wrapper adapts it silently
        model(torch.randint(0, 256, (1, 8)))
    assert deprecations(caught) == []


def test_old_block_warns_when_it_calls_attention_the_old_way(registry):
    model = built(registry, block="legacy")
    with pytest.warns(DeprecationWarning, match=r"attention 'sdpa' called as \(x, positional, pos"):
        model(torch.randint(0, 256, (1, 8)))


def test_old_model_warns_for_its_missing_layout_and_its_old_block_calls(registry):
    model = built(registry, arch="legacy")
    with pytest.warns(DeprecationWarning) as caught:
        model(torch.randint(0, 256, (1, 8)))
    messages = deprecations(caught.list)
    assert any("model 'legacy' does not define layout()" in m for m in messages)
    assert any("block 'gpt' called as (x, positional, pos, cache)" in m for m in messages)
    with pytest.warns(DeprecationWarning, match="does not define layout"):
        layout = model.layout()
    assert (layout.embedding, layout.norm, layout.head) == (model.embedding, model.norm, model.head)
    assert list(layout.blocks) == list(model.blocks)


def test_the_unchanged_kinds_warn_nothing(registry, tmp_path):
    """Positional with only ``bias``, norm, tokenizer and heads: their contract did not change."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config = config_for(registry, **{**UNCHANGED_KINDS, "vocab_size": "auto"})
        tokenizer = build_tokenizer(config, registry)
        tokenizer.save(tmp_path / "tok")
        again = load_tokenizer(tmp_path / "tok", registry)
        assert again.decode(again.encode("héllo\n")) == "héllo\n"
        torch.manual_seed(0)
        model = build_model(config, registry, tokenizer=tokenizer)
        ids = torch.tensor([tokenizer.encode("the quick brown ")])
        logits = model(ids)
        nn.functional.cross_entropy(logits[0, :-1], ids[0, 1:]).backward()
        generate_ids(model, ids[:, :4], max_new_tokens=6)
        apply_trainable(model, "last_block")
        built(registry, **{**UNCHANGED_KINDS, "adapters": [{"name": "lora", "r": 2}]})
        classifier = built(registry, **{**UNCHANGED_KINDS, "head": "legacy_last"})
        assert classifier(ids, lengths=torch.tensor([5])).shape == (1, 2)
    assert deprecations(caught) == []


# --- training, freezing, LoRA -----------------------------------------------------------------


def test_a_model_of_only_legacy_parts_trains_reloads_and_generates(registry, tmp_path):
    from llmbricks.core.store.runs import load_run

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        result = train_briefly(registry, tmp_path, ALL_LEGACY, steps=25, trainable="last_block")
        _, model, tokenizer = load_run(tmp_path / "run", registry=registry)
        assert type(model).__name__ == "LegacyModel" and tokenizer.name == "bytes"
        assert type(model.blocks[0].attn).__name__ == "LegacyAttention"
        out = generate_ids(model, [tokenizer.encode("the ")], max_new_tokens=8).tokens[0]
    assert out.shape == (12,) and tokenizer.decode(out.tolist()[:4]) == "the "
    assert result.metrics, result


def test_freeze_policies_find_the_legacy_models_parts_through_the_fallback(registry):
    model = built(registry, **ALL_LEGACY)
    with pytest.warns(DeprecationWarning, match="does not define layout"):
        apply_trainable(model, "last_block")
    names = trained(model)
    assert any(n.startswith("blocks.1.") for n in names) and "norm.g" in names
    assert not any(n.startswith("blocks.0.") for n in names)
    with pytest.warns(DeprecationWarning, match="does not define layout"):
        apply_trainable(model, "head")
    assert trained(model) == {"embedding.table.weight"}  # the head is tied: its weight is the table


def test_lora_default_targets_wrap_what_the_old_globs_wrapped(registry):
    plain = built(registry, **ALL_LEGACY)
    old_choice = {name for name, m in plain.named_modules() if isinstance(m, nn.Linear)
                  and any(fnmatchcase(name, g) for g in OLD_LORA_GLOBS)}
    assert old_choice == {f"blocks.{i}.{part}" for i in range(2) for part in
                          ("attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.out_proj",
                           "ff.up", "ff.down")}
    with pytest.warns(DeprecationWarning, match="does not define layout"):
        model = built(registry, **ALL_LEGACY, adapters=[{"name": "lora", "r": 2}])
    assert {n.rsplit(".", 1)[0] for n in adapter_state_names(model)} == old_choice
    assert trained(model) == adapter_state_names(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        logits = model(torch.randint(0, 256, (1, 8)))
    assert logits.shape == (1, 8, 256)


# --- the example plugin, frozen and current ---------------------------------------------------


@pytest.mark.parametrize("which", list(EXAMPLE_DIRS))
def test_the_example_plugin_loads_conforms_and_trains(which, fresh_import, registry_with, tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plugin = fresh_import("llmbricks_scalenorm", EXAMPLE_DIRS[which])
        registry = registry_with({"scalenorm": plugin}, strict=True)
        record = registry.plugins["scalenorm"]
        assert record.error is None and record.components == [("norm", "scalenorm")]
        assert record.presets == ["scalenorm-baby"]
        assert "position-wise" in check_component("norm", "scalenorm", registry)
        group = click.Group()
        plugin.llmbricks_commands(cli=group)
        assert "scalenorm-info" in group.commands
        train_briefly(registry, tmp_path, {"tokenizer": "char", "norm": "scalenorm"})
    assert deprecations(caught) == []


# --- older forms the compatibility layer must still serve -------------------------------


class _ToyRotary(PositionalEncoding):
    """Rotate query/key pairs by an angle proportional to the position (a toy RoPE)."""

    name = "toy_rotary"

    def rotation(self, positions: torch.Tensor):
        angle = positions[:, None].float() * 0.3
        return angle.cos(), angle.sin()

    def rotate(self, q, k, pos):
        cos, sin = pos.rotation

        def turn(x):
            x1, x2 = x[..., ::2], x[..., 1::2]
            return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)

        return turn(q), turn(k)


class _ToyRotaryOwnContext(_ToyRotary):
    """The same, overriding ``context`` as the old docs allowed (to share work)."""

    name = "toy_rotary_own_context"

    def context(self, q_positions, k_positions):
        return PositionContext(q=q_positions, k=k_positions, rotation=self.rotation(q_positions),
                               bias=self.bias(q_positions, k_positions))


@pytest.mark.parametrize("attention", ["sdpa", "legacy"])
def test_a_positional_that_overrides_context_still_rotates(registry_with, legacy, attention):
    toys = types.ModuleType("toys")
    toys.llmbricks_components = llmbricks.hookimpl(lambda: [_ToyRotary, _ToyRotaryOwnContext])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        registry = registry_with({"legacy": legacy, "toys": toys}, strict=True)
        ids = torch.randint(0, 256, (1, 10))
        plain = built(registry, positional="toy_rotary", attention=attention).eval()(ids)
        own = built(registry, positional="toy_rotary_own_context", attention=attention).eval()(ids)
    assert torch.allclose(plain, own)


def test_an_old_tied_head_is_still_counted_as_tied(registry):
    """Counting needs ``output_weight()``, which the old head lacks: read through ``proj``, warned."""
    model = built(registry, head="legacy_lm")
    with pytest.warns(DeprecationWarning, match="does not define output_weight"):
        assert summarize(model).head_tied


def test_an_old_model_generates_past_its_context(registry):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model = built(registry, arch="legacy", positional="absolute")
        assert generate_ids(model, [[1, 2, 3]], max_new_tokens=20).tokens.shape == (1, 23)


def test_an_old_sequence_head_in_a_model_dir_still_has_its_classes(registry, tmp_path):
    from llmbricks.core.store.model_dir import save_model_dir
    from llmbricks.core.tasks.classifier import load_classifier

    config = config_for(registry, tokenizer="bytes", head={"name": "legacy_last", "num_classes": 3})
    save_model_dir(tmp_path / "m", config, build_model(config, registry),
                   build_tokenizer(config, registry))
    assert load_classifier(tmp_path / "m", registry=registry).info.labels == ["0", "1", "2"]
