"""Broken and conflicting plugins, installed for real (dist-info on the path), seen by the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, run_cli

QUICKSTART = str(EXAMPLES / "configs" / "quickstart.yaml")

DUPLICATE_MODULE = '''
import llmbricks
from llmbricks import Norm


class OtherLayerNorm(Norm):
    """A second 'layernorm' from another package."""

    name = "layernorm"

    def forward(self, x):
        return x


@llmbricks.hookimpl
def llmbricks_components():
    return [OtherLayerNorm]
'''


def install_fake_dist(site: Path, dist: str, entry_points: dict[str, str],
                      modules: dict[str, str] | None = None) -> None:
    info = site / f"{dist}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = "".join(f"{name} = {value}\n" for name, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[llmbricks]\n{lines}")
    for name, source in (modules or {}).items():
        (site / f"{name}.py").write_text(source)


@pytest.fixture
def broken_site(tmp_path: Path) -> str:
    install_fake_dist(tmp_path, "broken-plugin", {"broken": "no_such_module_for_llmbricks"})
    return str(tmp_path)


def test_broken_plugin_is_shown_and_other_commands_work(broken_site):
    env = {"PYTHONPATH": broken_site}
    plugins = json.loads(run_cli("plugins", "--json", env=env).stdout)["plugins"]
    broken = next(p for p in plugins if p["name"] == "broken")
    assert broken["distribution"] == "broken-plugin"
    assert broken["error"] == ("import no_such_module_for_llmbricks failed: "
                               "No module named 'no_such_module_for_llmbricks'")
    table = run_cli("plugins", env=env)
    assert table.returncode == 0 and "error: import no_such_module_for_llmbricks failed" in table.stdout
    assert run_cli("components", env=env).returncode == 0
    smoke = run_cli("config", "validate", QUICKSTART, "--smoke", env=env)
    assert smoke.returncode == 0, smoke.stderr
    missing = run_cli("config", "validate", QUICKSTART, "--set", "model.norm=fancy", env=env)
    assert missing.returncode == 2
    assert "plugin(s) broken failed to load, see `llmbricks plugins`" in missing.stderr


def test_strict_mode_turns_the_failure_into_an_error(broken_site):
    result = run_cli("components", env={"PYTHONPATH": broken_site, "LLMBRICKS_STRICT_PLUGINS": "1"})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr == ("error: plugin 'broken': import no_such_module_for_llmbricks failed: No module "
                             "named 'no_such_module_for_llmbricks' (LLMBRICKS_STRICT_PLUGINS is set)\n")


def test_load_plugins_env_skips_the_broken_one(broken_site):
    env = {"PYTHONPATH": broken_site, "LLMBRICKS_LOAD_PLUGINS": "layers,models,positional,attention,heads"}
    plugins = json.loads(run_cli("plugins", "--json", env=env).stdout)["plugins"]
    assert "broken" not in {p["name"] for p in plugins} and "tokenizers" not in {p["name"] for p in plugins}


def test_duplicate_component_names_both_plugins_and_prefix_picks(tmp_path):
    install_fake_dist(tmp_path, "dup-plugin", {"dup": "dup_plugin"}, {"dup_plugin": DUPLICATE_MODULE})
    env = {"PYTHONPATH": str(tmp_path)}
    listing = run_cli("plugins", env=env)
    assert "conflict: norm 'layernorm' is registered by dup and layers" in " ".join(listing.stdout.split())
    result = run_cli("config", "validate", QUICKSTART, env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert ("model.norm: norm 'layernorm' is registered by plugins 'dup' and 'layers'; "
            "choose one with 'dup:layernorm' or 'layers:layernorm'") in result.stderr
    picked = run_cli("config", "validate", QUICKSTART, "--set", "model.norm=layers:layernorm", "--smoke", env=env)
    assert picked.returncode == 0, picked.stderr
    other = run_cli("config", "show", QUICKSTART, "--set", "model.norm=dup:layernorm", env=env)
    assert "norm:\n    name: dup:layernorm\n" in other.stdout
