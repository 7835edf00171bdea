"""A real third-party package (examples/plugin), pip-installed, used through the CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.conftest import EXAMPLES, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory) -> str:
    target = tmp_path_factory.mktemp("site")
    # pip builds setuptools projects in place: build from a copy to leave the example clean.
    source = tmp_path_factory.mktemp("src") / "plugin"
    shutil.copytree(EXAMPLES / "plugin", source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(source)],
        check=True, capture_output=True, text=True, timeout=300)
    return str(target)


def with_plugin(plugin_path: str, *args: str):
    return run_cli(*args, env={"PYTHONPATH": plugin_path})


def test_plugin_components_and_plugins_listing(plugin_path):
    rows = json.loads(with_plugin(plugin_path, "components", "norm", "--json").stdout)
    assert {"kind": "norm", "name": "scalenorm", "plugin": "scalenorm",
            "summary": "ScaleNorm: y = g * x / max(||x||, eps), with a single learned scalar g (init sqrt(D))."} in rows
    plugins = json.loads(with_plugin(plugin_path, "plugins", "--json").stdout)["plugins"]
    record = next(p for p in plugins if p["name"] == "scalenorm")
    assert record["distribution"] == "llmbricks-scalenorm" and record["version"] == "0.1.0"
    assert record["components"] == [["norm", "scalenorm"]] and record["presets"] == ["scalenorm-baby"]
    assert record["commands"] == ["scalenorm-info"]
    assert record["error"] is None
    # Without the plugin on the path, it is simply absent.
    assert "scalenorm" not in run_cli("components", "norm").stdout


def test_plugin_component_builds_a_model_from_a_config(plugin_path, tmp_path):
    config = tmp_path / "scalenorm.yaml"
    config.write_text("model:\n  preset: nanogpt-baby\n  norm: scalenorm\n  vocab_size: 65\n")
    result = with_plugin(plugin_path, "config", "validate", str(config), "--smoke")
    assert result.returncode == 0, result.stderr
    assert "smoke: ok - " in result.stdout
    summary = json.loads(with_plugin(plugin_path, "model", "summary", str(config), "--json").stdout)
    baby = json.loads(run_cli("model", "summary", str(config), "--set", "model.norm=layernorm", "--json").stdout)
    # ScaleNorm has one scalar per norm instead of 2 x 128: 9 norms in a 4-layer model.
    assert baby["total"] - summary["total"] == 9 * (2 * 128 - 1)
    shown = with_plugin(plugin_path, "config", "show", str(config), "--set", "model.norm.eps=0.001")
    assert "norm:\n    name: scalenorm\n    eps: 0.001\n" in shown.stdout


def test_plugin_preset_and_command(plugin_path):
    shown = with_plugin(plugin_path, "config", "new", "--preset", "scalenorm-baby")
    assert shown.returncode == 0, shown.stderr
    assert "preset: scalenorm-baby" in shown.stdout and "name: scalenorm" in shown.stdout
    info = with_plugin(plugin_path, "scalenorm-info")
    assert info.returncode == 0 and "norm 'scalenorm'" in info.stdout


def test_plugin_component_passes_the_conformance_kit(plugin_path):
    code = ("from llmbricks.testing import check_component\n"
            "print(','.join(check_component('norm', 'scalenorm')))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**__import__("os").environ, "PYTHONPATH": plugin_path})
    assert result.returncode == 0, result.stderr
    assert "cache equivalence" in result.stdout and "causal" in result.stdout
