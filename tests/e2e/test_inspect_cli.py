"""``llmbricks inspect attention|positional|embeddings`` as a user runs them: real PNGs with the
expected panels, and every bad input one line that changes nothing.

One tiny run is trained per module (``bad_run_fixtures.make_finished_run``: char tokenizer,
context 16, 2 layers x 2 heads, 8 steps).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.core.test_inspection import OPAQUE_PLUGIN
from tests.e2e.bad_inputs import assert_clean_failure, invoke, snapshot
from tests.e2e.bad_run_fixtures import make_finished_run
from tests.e2e.train_fixtures import tiny_config

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    root = make_finished_run(tmp_path_factory.mktemp("inspect-cli"))
    return root / "run", {"OMP_NUM_THREADS": "1"}


def assert_png(path: Path) -> None:
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == PNG_MAGIC
    assert imread(path).ndim == 3


def test_attention_writes_one_panel_per_layer_and_head(trained, tmp_path):
    run, env = trained
    before = snapshot(run)
    result = invoke("inspect", "attention", str(run), "-p", "the sea", "--out",
                    str(tmp_path / "new" / "attention.png"), env=env)
    assert result.code == 0, result.stderr
    out = tmp_path / "new" / "attention.png"
    assert result.stdout == f"wrote {out}: 2 layers x 2 heads, 7 tokens\n"
    assert_png(out)
    assert snapshot(run) == before
    result = invoke("inspect", "attention", str(run), "-p", "the", "--layer", "1", "--head", "0-1",
                    env=env, cwd=tmp_path)
    assert result.code == 0, result.stderr
    assert result.stdout == "wrote attention.png: 1 layer x 2 heads, 3 tokens\n"
    assert_png(tmp_path / "attention.png")


def test_positional_draws_every_kind_from_a_config_or_a_run(trained, tmp_path):
    run, env = trained
    result = invoke("inspect", "positional", str(run.parent / "tiny.yaml"), "-o",
                    str(tmp_path / "p.png"), env=env)
    assert result.code == 0, result.stderr
    assert result.stdout == f"wrote {tmp_path / 'p.png'}: 6 kinds (5 drawn), 16 positions\n"
    assert_png(tmp_path / "p.png")
    result = invoke("inspect", "positional", str(run), "--kind", "absolute", "--kind", "alibi",
                    "--positions", "8", "-o", str(tmp_path / "q.png"), env=env)
    assert result.code == 0, result.stderr
    assert result.stdout.endswith("2 kinds (2 drawn), 8 positions\n")
    assert_png(tmp_path / "q.png")


def test_embeddings_labels_the_most_frequent_tokens(trained, tmp_path):
    run, env = trained
    result = invoke("inspect", "embeddings", str(run), "--top", "5", "-o",
                    str(tmp_path / "e.png"), env=env)
    assert result.code == 0, result.stderr
    assert result.stdout.endswith("5 labelled, counted in the training data, text\n")
    assert_png(tmp_path / "e.png")


def test_the_verbs_are_listed():
    result = invoke("inspect", "--help")
    assert result.code == 0
    for verb in ("attention", "positional", "embeddings"):
        assert verb in result.stdout


# (id, arguments, exit code, words the line names); RUN and CONFIG stand for the tiny run's
CASES = [
    ("prompt-past-the-context", ["attention", "RUN", "-p", "the king and the sea"], 2,
     ["the prompt is 20 tokens", "context of 16", "give a shorter prompt"]),
    ("prompt-empty", ["attention", "RUN", "-p", ""], 2, ["the prompt is empty"]),
    ("prompt-outside-the-vocabulary", ["attention", "RUN", "-p", "Zebra"], 1,
     ["character 'Z'", "not in the 'char' tokenizer's vocabulary"]),
    ("prompt-invalid-utf8", ["attention", "RUN", "-p", "th\udcffe"], 2, ["invalid UTF-8"]),
    ("layer-missing", ["attention", "RUN", "-p", "the", "--layer", "2"], 2,
     ["layer 2 does not exist", "2 layers, 0 to 1"]),
    ("head-not-a-number", ["attention", "RUN", "-p", "the", "--head", "first"], 2,
     ["--head 'first'", "a number or a range"]),
    ("out-not-png", ["attention", "RUN", "-p", "the", "-o", "OUT/a.jpg"], 2,
     ["a.jpg", "ending in .png"]),
    ("out-a-directory", ["attention", "RUN", "-p", "the", "-o", "OUT"], 2, ["is a directory"]),
    ("out-under-a-file", ["attention", "RUN", "-p", "the", "-o", "CONFIG/a.png"], 1,
     ["cannot write", "a.png"]),
    ("run-unknown", ["attention", "OUT/nowhere", "-p", "the"], 2,
     ["RUN", "nowhere", "is not a directory"]),
    ("run-not-a-run", ["attention", "OUT", "-p", "the"], 1,
     ["is not a run directory", "config.yaml is missing"]),
    ("embeddings-run-unknown", ["embeddings", "OUT/nowhere"], 2, ["is not a directory"]),
    ("top-zero", ["embeddings", "RUN", "--top", "0"], 2, ["--top", "0 is not in the range"]),
    ("text-missing", ["embeddings", "RUN", "--text", "OUT/none.txt"], 2, ["none.txt", "no such file"]),
    ("kind-unknown", ["positional", "CONFIG", "--kind", "rop"], 2,
     ["unknown positional kind 'rop'", "did you mean 'rope'"]),
    ("positions-past-the-context", ["positional", "CONFIG", "--positions", "17"], 2,
     ["positions 17", "context length, 16"]),
    ("positions-zero", ["positional", "CONFIG", "--positions", "0"], 2, ["--positions"]),
    ("config-missing", ["positional", "OUT/none.yaml"], 2, ["none.yaml", "does not exist"]),
]


@pytest.mark.parametrize(("args", "code", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_bad_inspect_argument_is_one_line_and_changes_nothing(trained, tmp_path, args, code,
                                                               words):
    run, env = trained
    where = {"RUN": str(run), "CONFIG": str(run.parent / "tiny.yaml"), "OUT": str(tmp_path)}
    args = [where.get(a, a) for a in args]
    args = [a.replace("OUT/", f"{tmp_path}/").replace("CONFIG/", f"{where['CONFIG']}/")
            for a in args]
    before = snapshot(run, tmp_path)
    result = invoke("inspect", *args, env=env, cwd=tmp_path)
    assert_clean_failure(result, code, *words)
    assert result.stdout == ""
    assert snapshot(run, tmp_path) == before


def test_a_run_without_attention_weights_names_its_attention(registry_with, tmp_path):
    registry_with({"opaque": OPAQUE_PLUGIN})
    config = tiny_config(tmp_path, max_steps=1, eval_every=1, checkpoint_every=1,
                         sample_prompt=None)
    env = {"LLMBRICKS_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    result = invoke("train", str(config), "--out", str(tmp_path / "run"), "--set",
                    "model.attention=opaque", env=env)
    assert result.code == 0, result.stderr
    result = invoke("inspect", "attention", str(tmp_path / "run"), "-p", "the", env=env,
                    cwd=tmp_path)
    assert_clean_failure(result, 2, "attention 'opaque' does not give its attention weights",
                         "implement attention_weights")
    assert not (tmp_path / "attention.png").exists()


def test_inspect_runs_as_a_command(trained, tmp_path):
    """The console entry point, in a fresh interpreter: the PNG and the line."""
    run, env = trained
    result = invoke("inspect", "attention", str(run), "-p", "the", "-o", "a.png", env=env,
                    cwd=tmp_path, subprocess=True)
    assert result.code == 0, result.stderr
    assert result.stdout == "wrote a.png: 2 layers x 2 heads, 3 tokens\n"
    assert_png(tmp_path / "a.png")
