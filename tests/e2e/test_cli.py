"""The CLI as a user runs it: output, exit codes, one-line errors, no traceback without --debug."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import EXAMPLES, ROOT, run_cli

QUICKSTART = str(EXAMPLES / "configs" / "quickstart.yaml")
GPT2 = str(EXAMPLES / "configs" / "gpt2-124m.yaml")


def assert_one_line_error(result, expected: str, code: int = 2) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and expected in lines[0], lines[0]


def test_help_and_version_do_not_import_torch_or_load_plugins():
    code = (
        "import sys\n"
        "from llmbricks.cli.main import main\n"
        "try:\n"
        "    main(sys.argv[1:])\n"
        "except SystemExit:\n"
        "    pass\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert 'llmbricks.core.registry' not in sys.modules, 'plugins were loaded'\n"
        "print('clean')\n"
    )
    for args in (["--help"], ["--version"], ["config", "--help"], ["model", "summary", "--help"]):
        out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip().endswith("clean")


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.startswith("llmbricks, version ")


def test_components_lists_every_builtin():
    result = run_cli("components")
    assert result.returncode == 0, result.stderr
    for name in ("char", "regex", "bpe", "tiktoken", "token", "absolute", "none", "rope", "alibi",
                 "t5", "sinusoidal", "mha", "sdpa", "layernorm", "rmsnorm", "gelu", "swiglu", "gpt",
                 "lm", "python_docs", "tinyshakespeare"):
        assert name in result.stdout
    data = json.loads(run_cli("components", "positional", "--json").stdout)
    assert [(row["kind"], row["name"], row["plugin"]) for row in data] == [
        ("positional", name, "positional") for name in ("absolute", "alibi", "none", "rope", "sinusoidal", "t5")]


def test_components_show():
    result = run_cli("components", "show", "norm", "layernorm")
    assert result.returncode == 0, result.stderr
    assert "norm 'layernorm' - Layer normalization" in result.stdout
    assert "eps" in result.stdout and "1e-05" in result.stdout
    assert "plugin: layers (llmbricks " in result.stdout
    info = json.loads(run_cli("components", "show", "attention", "mha", "--json").stdout)
    from llmbricks.plugins.attention.base import AttentionParams

    assert {p["name"]: p["default"] for p in info["params"]} == AttentionParams().model_dump()


def test_components_errors():
    assert_one_line_error(run_cli("components", "show", "norm", "layernrom"),
                          "unknown norm 'layernrom' - did you mean 'layernorm'? (available: layernorm, rmsnorm;")
    assert_one_line_error(run_cli("components", "positionl"), "unknown kind 'positionl' - did you mean 'positional'?")
    usage = run_cli("components", "show", "norm")
    assert usage.returncode == 2 and "usage: llmbricks components show KIND NAME" in usage.stderr


def test_plugins_lists_builtins_with_versions():
    result = run_cli("plugins", "--json")
    data = json.loads(result.stdout)
    names = {p["name"]: p for p in data["plugins"]}
    assert {"tokenizers", "positional", "attention", "layers", "models", "heads"} <= set(names)
    assert names["models"]["distribution"] == "llmbricks" and "gpt2-small" in names["models"]["presets"]
    assert data["duplicates"] == []


def test_config_new_show_validate_roundtrip(tmp_path):
    new = run_cli("config", "new", "--preset", "nanogpt-baby")
    assert new.returncode == 0, new.stderr
    path = tmp_path / "config.yaml"
    path.write_text(new.stdout)
    shown = run_cli("config", "show", str(path))
    assert shown.returncode == 0 and shown.stdout == new.stdout
    valid = run_cli("config", "validate", str(path))
    assert valid.returncode == 0 and "valid (gpt model, 4 layers, 128 dims" in valid.stdout


def test_config_show_with_overrides_drops_old_params():
    result = run_cli("config", "show", GPT2, "--set", "model.attention={name: mha, n_kv_heads: 4}",
                     "--set", "model.positional=none", "--set", "model.n_layers=2")
    assert result.returncode == 0, result.stderr
    assert "n_layers: 2\n" in result.stdout
    assert "positional:\n    name: none\n" in result.stdout
    assert "n_kv_heads: 4" in result.stdout


def test_config_validate_smoke():
    result = run_cli("config", "validate", QUICKSTART, "--smoke")
    assert result.returncode == 0, result.stderr
    assert "smoke: ok - " in result.stdout and "logits [2, 16, 256]" in result.stdout


def test_model_summary_prints_the_books_counts():
    result = run_cli("model", "summary", GPT2)
    assert result.returncode == 0, result.stderr
    assert "total parameters:       124,412,160 (head tied)" in result.stdout
    assert "with the head untied:   163,009,536 (163.0M)" in result.stdout
    assert "474.59 MiB" in result.stdout
    # 6N + 12 L H Q T with N = every parameter but the position table (nanoGPT's estimate_mfu),
    # times batch_size 32 x grad_accum 1 x context 1,024 tokens per step.
    assert "FLOPs per token:        855M to train (6N + 12LHQT, N = 124M), 285M forward" \
        in result.stdout
    assert "FLOPs per step:         28.0T (32,768 tokens: batch 32, accum 1, context 1,024)" \
        in result.stdout
    flops = json.loads(run_cli("model", "summary", GPT2, "--json").stdout)["flops"]
    assert flops == {"train_per_token": 855_000_576, "forward_per_token": 285_000_192,
                     "matmul_params": 123_625_728, "attention": 12 * 12 * 64 * 1024,
                     "context_length": 1024, "tokens_per_step": 32_768,
                     "train_per_step": 855_000_576 * 32_768}
    untied = run_cli("model", "summary", GPT2, "--set", "model.head.tie_weights=false")
    assert "total parameters:       163,009,536 (head untied)" in untied.stdout
    assert "621.83 MiB" in untied.stdout  # the book's "621.83 MB"
    data = json.loads(run_cli("model", "summary", GPT2, "--set", "model.preset=gpt2-xl", "--json").stdout)
    assert round(data["total_untied"] / 1e6, 1) == 1637.8 and round(data["total_tied"] / 1e6, 1) == 1557.4


@pytest.mark.parametrize("args,expected", [
    (["--set", "model.positional=rop"], "model.positional: unknown positional 'rop'"),
    (["--set", "model.norm.esp=0.1"], "unknown parameter 'esp' of norm 'layernorm' - did you mean 'eps'?"),
    (["--set", "model.n_layers=two"], "model.n_layers: input should be a valid integer"),
    (["--set", "model.emb_dim=130"], "model.emb_dim: 130 is not divisible by model.n_heads=4"),
    (["--set", "model.n_layer=2"], "unknown config path 'model.n_layer' - did you mean 'model.n_layers'?"),
    (["--set", "model.preset=gpt2-smal"], "did you mean 'gpt2-small'?"),
])
def test_config_errors_exit_2_with_one_line(args, expected):
    assert_one_line_error(run_cli("config", "validate", QUICKSTART, *args), expected)


def test_file_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  n_layers: 2\n   bad: [\n")
    assert_one_line_error(run_cli("config", "show", str(bad)), "bad.yaml:3:7: malformed YAML")
    assert_one_line_error(run_cli("config", "show", str(tmp_path / "none.yaml")), "does not exist")


def test_unresolvable_vocab_is_a_config_error_and_debug_shows_traceback():
    result = run_cli("model", "summary", QUICKSTART)
    assert_one_line_error(result, "model.vocab_size is 'auto' but tokenizer 'char' learns its vocabulary")
    debug = run_cli("--debug", "model", "summary", QUICKSTART)
    assert debug.returncode == 2 and "Traceback" in debug.stderr
    assert debug.stderr.rstrip().splitlines()[-1].startswith("error: model.vocab_size is 'auto'")


def test_runtime_failure_exits_1_with_one_line(registry_with, capsys, monkeypatch):
    import types

    import llmbricks
    from llmbricks.cli.main import main
    from llmbricks.core.interfaces import Attention

    class Crashing(Attention):
        """Attention that fails at run time."""

        name = "crashing"

        def residual_projections(self):
            return []

        def forward(self, x, pos, cache=None):
            raise RuntimeError("shapes do not line up\nsecond line")

    @llmbricks.hookimpl
    def llmbricks_components():
        return [Crashing]

    registry_with({"crash": types.SimpleNamespace(llmbricks_components=llmbricks_components)})
    with pytest.raises(SystemExit) as exit_info:
        main(["config", "validate", QUICKSTART, "--set", "model.attention=crashing", "--smoke"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.strip() == ("error: RuntimeError: shapes do not line up "
                           "(run with --debug for the traceback)")


def test_unknown_verb_is_a_usage_error():
    result = run_cli("trian")
    assert result.returncode == 2 and "No such command 'trian'" in result.stderr


def test_every_verb_prints_a_warning_as_one_line(capsys):
    """A library's warning under any verb is one ``warning: ...`` line, not Python's two lines."""
    import warnings

    import click

    from llmbricks.cli.main import cli, main

    @click.command("warns")
    def warns() -> None:
        for _ in range(3):  # the same warning from a loop prints once
            warnings.warn("this tensor is\n  deprecated", FutureWarning, stacklevel=1)
        click.echo("done")

    cli.add_command(warns)
    try:
        with pytest.raises(SystemExit) as exit_info:
            main(["warns"])
    finally:
        cli.commands.pop("warns")
    assert exit_info.value.code == 0
    captured = capsys.readouterr()
    assert captured.out == "done\n"
    assert captured.err.splitlines() == ["warning: this tensor is deprecated"]
