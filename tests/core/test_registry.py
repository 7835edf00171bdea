"""The plugin registry: loading, lookup, duplicates, failures, info and build."""

from __future__ import annotations

import types
from importlib import metadata

import pytest

import llmbricks
from llmbricks.core.component import ComponentSpec, ParamsModel
from llmbricks.core.errors import ComponentError, PluginError
from llmbricks.core.interfaces import Norm
from llmbricks.core.registry import Registry

BUILTINS = {"tokenizers", "positional", "attention", "layers", "models", "heads"}


def make_norm(name: str, doc: str = "A test norm.") -> type[Norm]:
    class TestNorm(Norm):
        __doc__ = doc

        class Params(ParamsModel):
            scale: float = 1.0

        def forward(self, x):
            return x * self.params.scale

    TestNorm.name = name
    return TestNorm


def plugin_with(*classes, presets=None) -> types.SimpleNamespace:
    @llmbricks.hookimpl
    def llmbricks_components():
        return list(classes)

    @llmbricks.hookimpl
    def llmbricks_presets():
        return presets or {}

    return types.SimpleNamespace(llmbricks_components=llmbricks_components,
                                 llmbricks_presets=llmbricks_presets)


def test_builtins_load_through_entry_points():
    reg = Registry()
    assert BUILTINS <= set(reg.plugins)
    assert all(reg.plugins[name].distribution == "llmbricks" for name in BUILTINS)
    assert reg.names("positional") == ["absolute", "alibi", "none", "rope", "sinusoidal", "t5"]
    assert "gpt2-small" in reg.preset_names()


def test_info_reports_params_with_defaults_and_plugin():
    info = Registry().info("attention", "mha")
    assert info.plugin == "attention" and info.distribution == "llmbricks"
    assert info.summary.startswith("Reference multi-head causal attention")
    params = {p.name: p for p in info.params}
    assert params["qkv_bias"].default is False and params["qkv_bias"].type == "bool"
    assert params["n_kv_heads"].default is None


def test_unknown_component_suggests_and_lists():
    reg = Registry({"extra": plugin_with(make_norm("rmsnorm"))})
    with pytest.raises(ComponentError) as err:
        reg.get("norm", "rmsnrom")
    message = str(err.value)
    assert "unknown norm 'rmsnrom' - did you mean 'rmsnorm'?" in message
    assert "available: layernorm, rmsnorm" in message


def test_unknown_kind():
    with pytest.raises(ComponentError, match="unknown kind 'norms' - did you mean 'norm'"):
        Registry(entry_points=False).names("norms")


def test_duplicate_registration_names_both_plugins_and_plugin_prefix_picks_one():
    first, second = make_norm("twin", "First twin."), make_norm("twin", "Second twin.")
    reg = Registry({"alpha": plugin_with(first), "beta": plugin_with(second)}, entry_points=False)
    with pytest.raises(PluginError) as err:
        reg.get("norm", "twin")
    assert "'alpha' and 'beta'" in str(err.value)
    assert "'alpha:twin' or 'beta:twin'" in str(err.value)
    assert reg.get("norm", "alpha:twin") is first
    assert reg.get("norm", "beta:twin") is second
    assert reg.duplicates() == [("norm", "twin", ["alpha", "beta"])]


def test_duplicate_is_fatal_in_strict_mode():
    with pytest.raises(PluginError, match="registered by plugins 'alpha' and 'beta'"):
        Registry({"alpha": plugin_with(make_norm("twin")), "beta": plugin_with(make_norm("twin"))},
                 entry_points=False, strict=True)


def fake_entry_points(*extra: metadata.EntryPoint):
    real = metadata.entry_points

    def entry_points(**kwargs):
        found = list(real(**kwargs))
        if kwargs.get("group") == "llmbricks":
            found += list(extra)
        return found

    return entry_points


def test_plugin_that_fails_to_import_is_recorded_and_skipped(monkeypatch):
    broken = metadata.EntryPoint(name="broken", value="no_such_module_xyz", group="llmbricks")
    monkeypatch.setattr(metadata, "entry_points", fake_entry_points(broken))
    reg = Registry(strict=False)
    assert reg.plugins["broken"].error == "import no_such_module_xyz failed: No module named 'no_such_module_xyz'"
    assert reg.names("attention") == ["mha", "sdpa"]  # everything else still works


def test_strict_plugins_env_makes_import_failures_raise(monkeypatch):
    broken = metadata.EntryPoint(name="broken", value="no_such_module_xyz", group="llmbricks")
    monkeypatch.setattr(metadata, "entry_points", fake_entry_points(broken))
    monkeypatch.setenv("LLMBRICKS_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="plugin 'broken': import no_such_module_xyz failed"):
        Registry()


def test_load_plugins_env_loads_only_named(monkeypatch):
    monkeypatch.setenv("LLMBRICKS_LOAD_PLUGINS", "layers, heads")
    reg = Registry()
    assert set(reg.plugins) == {"layers", "heads"}
    assert reg.names("attention") == []


def test_invalid_component_class_is_a_plugin_error():
    class NoKind:
        pass

    reg = Registry({"bad": plugin_with(NoKind)}, entry_points=False)
    assert "is not a Component subclass" in reg.plugins["bad"].error


def test_hook_that_raises_is_recorded():
    @llmbricks.hookimpl
    def llmbricks_components():
        raise RuntimeError("boom")

    reg = Registry({"bad": types.SimpleNamespace(llmbricks_components=llmbricks_components)},
                   entry_points=False)
    assert reg.plugins["bad"].error == "llmbricks_components failed: boom"


def test_resolve_fills_defaults_and_checks_params():
    reg = Registry()
    spec = reg.resolve("norm", "layernorm")
    assert spec == ComponentSpec(name="layernorm", params={"eps": 1e-5, "bias": True})
    with pytest.raises(ComponentError, match="unknown parameter 'esp' of norm 'layernorm' - did you mean 'eps'"):
        reg.resolve("norm", {"name": "layernorm", "esp": 1e-6}, "model.norm")


def test_build_passes_params_and_context():
    reg = Registry()
    from llmbricks.core.component import Dims

    dims = Dims(vocab_size=10, context_length=8, emb_dim=16, n_heads=4, n_kv_heads=2,
                n_layers=1, dropout=0.0)
    attn = reg.build("attention", {"name": "mha", "qkv_bias": True, "n_kv_heads": 2}, dims=dims)
    assert attn.params.qkv_bias is True
    assert attn.k_proj.out_features == 2 * 4 and attn.q_proj.bias is not None


def test_isolated_registry_fixture(isolated_registry):
    isolated_registry.register(plugin_with(make_norm("solo")), name="solo")
    assert llmbricks.registry is isolated_registry
    assert isolated_registry.names("norm") == ["solo"]


def test_registry_with_fixture(registry_with):
    reg = registry_with({"extra": plugin_with(make_norm("extra_norm"))})
    assert "extra_norm" in reg.names("norm") and "layernorm" in reg.names("norm")
    assert llmbricks.registry is reg
