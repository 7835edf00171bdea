"""Misbehaving plugins, installed for real, cannot take the CLI down (issue 16, point 9).

Each case installs one fake distribution whose plugin misbehaves (its import raises anything, a
hook raises or returns malformed components, presets or verbs, a hook is misdeclared). Plugins
are discovered per interpreter, so each case runs one fresh interpreter, which runs the CLI in
process several times (a fresh registry each time) and checks that:

- ``llmbricks plugins --json`` exits 0 and shows the plugin with an error naming the hook;
- ``llmbricks components`` and a built-in verb (``config validate``) still exit 0;
- ``llmbricks nosuchverb`` is still Click's usage error (exit 2);
- with ``LLMBRICKS_STRICT_PLUGINS=1`` a verb fails in one line,
  ``error: plugin 'NAME': <hook> ...`` (exit 2), with no traceback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import types
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from llmbricks.core.registry import Registry, use_registry
from tests.conftest import EXAMPLES, ROOT, run_cli
from tests.e2e.bad_inputs import Result, assert_clean_failure, invoke, snapshot
from tests.e2e.test_plugin_failures import install_fake_dist

QUICKSTART = str(EXAMPLES / "configs" / "quickstart.yaml")
STRICT = {"LLMBRICKS_STRICT_PLUGINS": "1"}

HEAD = "import sys\n\nimport click\n\nimport llmbricks\nfrom llmbricks import Norm\n\n"


def hook(name: str, body: str, args: str = "") -> str:
    """A module-level hook implementation with ``body`` (indented four spaces)."""
    return f"\n@llmbricks.hookimpl\ndef {name}({args}):\n    {body}\n"


@dataclass(frozen=True)
class BadPlugin:
    """One misbehaving plugin: its module source, and what its recorded error must say."""

    id: str
    source: str
    stage: str  # how the error starts: "import MODULE" or the hook's name
    words: tuple[str, ...]
    entry_points: dict[str, str] = field(default_factory=dict)

    @property
    def module(self) -> str:
        return f"bad_{self.id}"

    @property
    def plugin(self) -> str:
        return next(iter(self.entry_points), self.id)

    def install(self, site: Path) -> None:
        points = self.entry_points or {self.id: self.module}
        install_fake_dist(site, f"bad-{self.id}".replace("_", "-"), points, {self.module: self.source})


NORM_CLASS = '''
class Twin(Norm):
    """A norm that does nothing."""

    name = "twin"

    def forward(self, x):
        return x
'''

CASES = [
    BadPlugin("import_raises", HEAD + 'raise RuntimeError("boom while importing")\n',
              "import bad_import_raises failed", ("boom while importing",)),
    BadPlugin("import_exits", HEAD + "sys.exit(3)\n", "import bad_import_exits called sys.exit(3)", ()),
    BadPlugin("import_interrupts", HEAD + "raise KeyboardInterrupt\n",
              "import bad_import_interrupts raised KeyboardInterrupt", ()),
    BadPlugin("import_base_exception",
              HEAD + 'class PluginAbort(BaseException):\n    pass\n\n\nraise PluginAbort("stop everything")\n',
              "import bad_import_base_exception raised PluginAbort", ("stop everything",)),
    BadPlugin("import_syntax_error", "def broken(:\n", "import bad_import_syntax_error failed",
              ("invalid syntax",)),
    BadPlugin("entry_point_attribute", HEAD, "import bad_entry_point_attribute:nothing failed",
              ("has no attribute 'nothing'",),
              {"entry_point_attribute": "bad_entry_point_attribute:nothing"}),
    BadPlugin("hostile_message",
              HEAD + "class Hostile(Exception):\n    def __str__(self):\n        raise ValueError('no')\n\n\n"
              "raise Hostile()\n", "import bad_hostile_message raised Hostile", ()),
    BadPlugin("components_raises", HEAD + hook("llmbricks_components", 'raise ValueError("no components today")'),
              "llmbricks_components failed", ("no components today",)),
    BadPlugin("components_exits", HEAD + hook("llmbricks_components", "sys.exit(4)"),
              "llmbricks_components called sys.exit(4)", ()),
    BadPlugin("components_not_a_list", HEAD + NORM_CLASS + hook("llmbricks_components", 'return {"norm": Twin}'),
              "llmbricks_components returned a dict", ("not a list of component classes",)),
    BadPlugin("component_not_a_class", HEAD + hook("llmbricks_components", 'return ["layernorm"]'),
              "llmbricks_components: 'layernorm' is not a Component subclass", ()),
    BadPlugin("component_not_a_component",
              HEAD + "class Plain:\n    name = 'plain'\n" + hook("llmbricks_components", "return [Plain]"),
              "llmbricks_components:", ("Plain", "is not a Component subclass")),
    BadPlugin("component_without_name",
              HEAD + 'class Nameless(Norm):\n    """No name."""\n' + hook("llmbricks_components", "return [Nameless]"),
              "llmbricks_components: Nameless.name", ("non-empty string",)),
    BadPlugin("component_listed_twice", HEAD + NORM_CLASS + hook("llmbricks_components", "return [Twin, Twin]"),
              "llmbricks_components: norm 'twin' is listed twice", ()),
    BadPlugin("presets_raises", HEAD + hook("llmbricks_presets", 'raise RuntimeError("presets exploded")'),
              "llmbricks_presets failed", ("presets exploded",)),
    BadPlugin("presets_not_a_mapping", HEAD + hook("llmbricks_presets", 'return [("tiny", {"n_layers": 1})]'),
              "llmbricks_presets returned a list", ("not a mapping of preset names",)),
    BadPlugin("preset_not_a_mapping", HEAD + hook("llmbricks_presets", 'return {"tiny": ["n_layers", 1]}'),
              "llmbricks_presets: preset 'tiny' is a list", ("not a mapping of model fields",)),
    BadPlugin("preset_holds_an_object", HEAD + hook("llmbricks_presets", 'return {"tiny": {"n_layers": {1, 2}}}'),
              "llmbricks_presets: preset 'tiny': field 'n_layers' holds a set", ()),
    BadPlugin("commands_raises", HEAD + hook("llmbricks_commands", 'raise RuntimeError("verbs exploded")', "cli"),
              "llmbricks_commands failed", ("verbs exploded",)),
    BadPlugin("commands_exits", HEAD + hook("llmbricks_commands", "raise SystemExit('bye')", "cli"),
              "llmbricks_commands called sys.exit('bye')", ()),
    BadPlugin("command_not_click", HEAD + hook("llmbricks_commands", 'cli.commands["hello"] = "hello"', "cli"),
              "llmbricks_commands added a str 'hello' as the verb 'hello'", ("not a click command",)),
    BadPlugin("commands_returned", HEAD + hook("llmbricks_commands", 'return [click.Command("hello")]', "cli"),
              "llmbricks_commands returned a list", ("cli.add_command",)),
    BadPlugin("command_shadows_builtin",
              HEAD + hook("llmbricks_commands", 'cli.add_command(click.Command("train", callback=lambda: '
                                                 'print("plugin train")))', "cli"),
              "llmbricks_commands adds the verb 'train', which is built in", ()),
    BadPlugin("hook_wrong_signature", HEAD + hook("llmbricks_components", "return []", "registry"),
              "llmbricks_components takes 'registry'", ("def llmbricks_components()",)),
    BadPlugin("hook_unknown_name", HEAD + hook("llmbricks_component", "return []"),
              "llmbricks_component is not an llmbricks hook", ("did you mean 'llmbricks_components'",)),
    BadPlugin("module_loaded_twice", HEAD + NORM_CLASS + hook("llmbricks_components", "return [Twin]"),
              "bad_module_loaded_twice is already loaded as plugin 'a_first'", (),
              {"b_second": "bad_module_loaded_twice", "a_first": "bad_module_loaded_twice"}),
]

#: The commands each case runs (argv, extra environment), in this order.
CALLS: list[tuple[list[str], dict[str, str]]] = [
    (["plugins", "--json"], {}),
    (["plugins"], {}),
    (["components", "--json"], {}),
    (["config", "validate", QUICKSTART], {}),
    (["nosuchverb"], {}),
    (["components"], STRICT),
]

#: Runs every case in one fresh interpreter: a case's site folder is on ``sys.path`` only while
#: its calls run, and each call gets a fresh registry and command group. Entry points are read
#: from ``sys.path`` at each load, so a case sees its own plugin and no other case's.
DRIVER = """
import importlib, json, sys
from llmbricks.cli import main as cli_main
from llmbricks.core import registry
from tests.e2e.bad_inputs import invoke

cases, calls, out = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
results = {}
for case_id, site in cases.items():
    sys.path.insert(0, site)
    importlib.invalidate_caches()
    results[case_id] = []
    for argv, env in calls:
        registry.set_registry(None)
        cli_main.cli.commands.clear()
        cli_main.cli.__dict__.pop("_plugins_loaded", None)
        result = invoke(*argv, env=env)
        results[case_id].append({"code": result.code, "stdout": result.stdout, "stderr": result.stderr})
    sys.path.remove(site)
with open(out, "w", encoding="utf-8") as handle:
    json.dump(results, handle)
"""


@pytest.fixture(scope="module")
def battery(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[list[Result], bool]]:
    """Each case's results, and whether its site folder and the examples were left unchanged."""
    root = tmp_path_factory.mktemp("bad-plugins")
    sites = {}
    for case in CASES:
        sites[case.id] = root / case.id
        case.install(sites[case.id])
    before = {case_id: snapshot(site) for case_id, site in sites.items()}
    examples = snapshot(ROOT / "examples")
    out = root / "results.json"
    env = {k: v for k, v in os.environ.items() if k != "LLMBRICKS_STRICT_PLUGINS"}
    done = subprocess.run([sys.executable, "-c", DRIVER, json.dumps({k: str(v) for k, v in sites.items()}),
                           json.dumps(CALLS), str(out)], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, f"the driver itself failed:\n{done.stderr}"
    results = json.loads(out.read_text(encoding="utf-8"))
    unchanged = snapshot(ROOT / "examples") == examples
    return {case_id: ([Result(**r) for r in results[case_id]], unchanged and snapshot(sites[case_id]) ==
                      before[case_id]) for case_id in sites}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_misbehaving_plugin_is_recorded_and_skipped(case: BadPlugin, battery):
    (listing, table, components, verb, usage, strict), unchanged = battery[case.id]
    assert listing.code == 0, listing.stderr
    records = {p["name"]: p for p in json.loads(listing.stdout)["plugins"]}
    error = records[case.plugin]["error"]
    assert error and error.startswith(case.stage), error
    for word in case.words:
        assert word.lower() in error.lower(), f"{word!r} not in {error!r}"
    assert "layers" in records and records["layers"]["error"] is None
    assert not {name for name, r in records.items() if r["error"]} - {case.plugin}, "another plugin failed"
    assert table.code == 0 and f"error: {case.stage}" in " ".join(table.stdout.split()), table.stdout
    assert components.code == 0, components.stderr
    assert any(row["name"] == "layernorm" for row in json.loads(components.stdout))
    assert verb.code == 0, verb.stderr
    assert usage.code == 2 and "No such command 'nosuchverb'" in usage.stderr, usage.stderr
    assert "Traceback" not in usage.stderr
    line = assert_clean_failure(strict, 2, f"plugin '{case.plugin}'", "LLMBRICKS_STRICT_PLUGINS")
    assert line.startswith(f"error: plugin '{case.plugin}': {case.stage}"), line
    assert unchanged, "a case changed its site folder or the examples"


def test_builtin_verb_wins_over_a_plugin_verb_of_the_same_name(tmp_path: Path):
    """Once the plugin verbs are loaded (by a verb that is not built in), `train` is still ours."""
    site = tmp_path / "site"
    case = next(c for c in CASES if c.id == "command_shadows_builtin")
    install_fake_dist(site, "shadow", {"shadow": "bad_shadow"}, {"bad_shadow": case.source})
    install_fake_dist(site, "greeter", {"greeter": "bad_greeter"}, {"bad_greeter": HEAD + hook(
        "llmbricks_commands", 'cli.add_command(click.Command("hello", callback=lambda: print("hi")))', "cli")})
    # One process: `hello` loads the plugin verbs and runs; `train` then must be the built-in.
    code = ("import click\nfrom llmbricks.cli.main import cli\nfrom tests.e2e.bad_inputs import invoke\n"
            "hello = invoke('hello')\nprint(hello.code, hello.stdout.strip())\n"
            "print(cli.get_command(click.Context(cli), 'train').callback.__module__)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])})
    assert done.stdout.splitlines() == ["0 hi", "llmbricks.cli.train"], done.stderr


SLOW_IMPORT = '''
import pathlib
import time
import types

pathlib.Path({marker!r}).write_text("importing")
{body}
'''


@pytest.mark.parametrize("body", [
    "time.sleep(60)",
    "try:\n    time.sleep(60)\nexcept KeyboardInterrupt:\n    pass  # a plugin that swallows Ctrl-C\n",
], ids=["plugin_sleeps", "plugin_swallows_the_interrupt"])
def test_a_real_ctrl_c_while_a_plugin_imports_still_interrupts(body: str, tmp_path: Path):
    """A SIGINT that arrives during a plugin's import is the user's: llmbricks stops (exit 130)."""
    marker = tmp_path / "importing"
    install_fake_dist(tmp_path / "site", "slow", {"slow": "slow_plugin"},
                      {"slow_plugin": SLOW_IMPORT.format(marker=str(marker), body=body)})
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    # A shell gives the command Ctrl-C's default disposition; a suite started in the background
    # (`make test &`) inherits SIGINT ignored, and Python keeps an ignored SIGINT ignored.
    process = subprocess.Popen([sys.executable, "-m", "llmbricks", "components"], env=env, cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), "the plugin never started importing"
        time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and stderr.strip().splitlines()[-1] in ("aborted", "interrupted")


CONSTRUCTORS = HEAD + '''
class Boom(Norm):
    """A norm whose constructor fails."""

    name = "boomnorm"

    def __init__(self, params, dims):
        raise RuntimeError("the accelerator library is too old")


class Picky(Norm):
    """A norm whose constructor rejects its parameters."""

    name = "pickynorm"

    def __init__(self, params, dims):
        raise ValueError("pickynorm needs an even emb_dim")


class Quitter(Norm):
    """A norm whose constructor exits."""

    name = "quitnorm"

    def __init__(self, params, dims):
        sys.exit(5)


class CheckCrash(Norm):
    """A norm whose config-time check() crashes."""

    name = "checkcrash"

    @classmethod
    def check(cls, params, dims):
        raise RuntimeError("check needs a GPU")


class CheckRefuses(Norm):
    """A norm whose check() refuses the model's dimensions."""

    name = "checkrefuses"

    @classmethod
    def check(cls, params, dims):
        raise ValueError(f"emb_dim {dims.emb_dim} is not a power of two")


class VocabCrash(llmbricks.Tokenizer):
    """A tokenizer whose known_vocab_size() crashes."""

    name = "vocabcrash"

    @classmethod
    def known_vocab_size(cls, params):
        raise OSError("vocabulary server unreachable")
''' + hook("llmbricks_components", "return [Boom, Picky, Quitter, CheckCrash, CheckRefuses, VocabCrash]")


@pytest.fixture(scope="module")
def constructor_plugin() -> types.ModuleType:
    """The plugin module, registered in process: a constructor runs long after discovery."""
    module = types.ModuleType("bad_ctors")
    exec(compile(CONSTRUCTORS, "bad_ctors.py", "exec"), module.__dict__)
    return module


@pytest.mark.parametrize("norm,code,words", [
    ("boomnorm", 1, ("norm 'boomnorm' (plugin 'ctors') could not be built", "accelerator library is too old")),
    ("pickynorm", 2, ("norm 'pickynorm' (plugin 'ctors') rejected its parameters", "needs an even emb_dim")),
    ("quitnorm", 1, ("norm 'quitnorm' (plugin 'ctors') could not be built", "called sys.exit(5)")),
    ("checkcrash", 1, ("norm 'checkcrash' (plugin 'ctors') could not be built",
                       "its check() failed", "check needs a GPU")),
    ("checkrefuses", 2, ("model.norm: emb_dim 128 is not a power of two",)),
])
def test_a_component_constructor_that_raises_names_the_component_and_plugin(norm, code, words,
                                                                           constructor_plugin):
    with use_registry(Registry({"ctors": constructor_plugin})):
        result = invoke("config", "validate", QUICKSTART, "--set", f"model.norm={norm}", "--smoke")
    assert_clean_failure(result, code, *words)


def test_a_tokenizer_whose_vocab_size_lookup_raises_names_it(constructor_plugin):
    with use_registry(Registry({"ctors": constructor_plugin})):
        result = invoke("config", "validate", QUICKSTART, "--set", "model.tokenizer=vocabcrash")
    assert_clean_failure(result, 1, "tokenizer 'vocabcrash' (plugin 'ctors')",
                         "known_vocab_size() failed", "vocabulary server unreachable")


def test_a_plugin_verb_that_raises_names_the_verb_and_plugin(tmp_path: Path):
    site = tmp_path / "site"
    install_fake_dist(site, "crashy", {"crashy": "bad_crashy"}, {"bad_crashy": HEAD + '''
def crash():
    raise KeyError("a missing setting")
''' + hook("llmbricks_commands", 'cli.add_command(click.Command("crash", callback=crash))', "cli")})
    done = run_cli("crash", env={"PYTHONPATH": str(site)})
    line = assert_clean_failure(Result(done.returncode, done.stdout, done.stderr), 1,
                                "verb 'crash' of plugin 'crashy' failed", "a missing setting")
    assert line.endswith("(--debug shows the plugin's traceback)")
