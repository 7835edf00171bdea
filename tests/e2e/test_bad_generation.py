"""The battery, generation: every bad parameter, prompt or source is one line, and nothing changes.

One tiny run is trained per module (char tokenizer, 2 steps); each case runs ``llmbricks
generate`` on it in process and checks the exit code, the one line and that the run is untouched.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.e2e.bad_inputs import assert_clean_failure, invoke, snapshot
from tests.e2e.train_fixtures import tiny_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    tmp = tmp_path_factory.mktemp("generation")
    config = tiny_config(tmp, max_steps=2, eval_every=2, checkpoint_every=2, sample_prompt=None)
    env = {"LLMBRICKS_CACHE_DIR": str(tmp / "cache"), "OMP_NUM_THREADS": "1"}
    result = invoke("train", str(config), "--out", str(tmp / "run"), env=env)
    assert result.code == 0, result.stderr
    return tmp / "run", env


# (id, arguments after RUN, exit code, words the line names)
CASES = [
    ("temperature-nan", ["-p", "the", "-t", "nan"], 2, ["--temperature nan", "finite"]),
    ("temperature-inf", ["-p", "the", "-t", "inf"], 2, ["--temperature inf", "finite number >= 0"]),
    ("temperature-negative", ["-p", "the", "-t", "-1"], 2, ["--temperature -1.0", ">= 0"]),
    ("top-k-zero", ["-p", "the", "-t", "1", "--top-k", "0"], 2, ["--top-k 0", "whole number >= 1"]),
    ("top-k-not-a-number", ["-p", "the", "--top-k", "many"], 2, ["--top-k", "not a valid integer"]),
    ("top-p-zero", ["-p", "the", "--top-p", "0"], 2, ["--top-p 0.0", "top-p must be in (0, 1]"]),
    ("top-p-above-one", ["-p", "the", "--top-p", "1.5"], 2, ["--top-p 1.5", "(0, 1]"]),
    ("top-p-nan", ["-p", "the", "--top-p", "nan"], 2, ["--top-p nan", "(0, 1]"]),
    ("max-new-tokens-negative", ["-p", "the", "-n", "-1"], 2,
     ["--max-new-tokens -1", "from 0 to 16777216"]),
    ("max-new-tokens-huge", ["-p", "the", "-n", "100000000"], 2,
     ["--max-new-tokens 100000000", "from 0 to 16777216"]),
    ("seed-negative", ["-p", "the", "--seed", "-1"], 2, ["--seed -1", "from 0 to 9223372036854775807"]),
    ("seed-overflows-torch", ["-p", "the", "--seed", str(2**64)], 2, [f"--seed {2**64}", "whole number"]),
    ("stop-empty", ["-p", "the", "--stop", ""], 2, ["--stop ''", "must name a special token"]),
    ("stop-not-special", ["-p", "the", "--stop", "<|end|>"], 2,
     ["--stop '<|end|>'", "not a special token of this tokenizer", "it has none"]),
    ("prompt-lookup-negative", ["-p", "the", "--prompt-lookup", "-1"], 2,
     ["--prompt-lookup -1", ">= 0 (0 = off)"]),
    ("prompt-lookup-with-sampling", ["-p", "the", "--prompt-lookup", "3", "-t", "0.5"], 2,
     ["--prompt-lookup needs greedy decoding"]),
    ("prompt-empty", ["-p", ""], 2, ["--prompt is empty"]),
    ("prompt-invalid-utf8", ["-p", "th\udcffe"], 2, ["--prompt", "invalid UTF-8 at byte offset 2", "0xff"]),
    ("prompt-outside-the-vocabulary", ["-p", "Zebra"], 1,
     ["character 'Z' at offset 0", "not in the 'char' tokenizer's vocabulary"]),
    ("instruction-empty", ["-i", " "], 2, ["--instruction is empty"]),
    ("neither-prompt-nor-instruction", [], 2, ["give --prompt TEXT"]),
    ("set-with-a-run", ["-p", "the", "--set", "seed=1"], 2, ["--set applies to --config"]),
]


@pytest.mark.parametrize(("args", "code", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_bad_generation_argument_is_one_line_and_changes_nothing(trained, args, code, words):
    run, env = trained
    before = snapshot(run)
    result = invoke("generate", str(run), *args, env=env)
    assert_clean_failure(result, code, *words)
    assert result.stdout == ""
    assert snapshot(run) == before


def test_a_run_that_does_not_exist(trained, tmp_path):
    run, env = trained
    result = invoke("generate", str(tmp_path / "nowhere"), "-p", "the", env=env)
    assert_clean_failure(result, 2, "nowhere", "is not a directory")
    assert not (tmp_path / "nowhere").exists()


def test_a_directory_that_is_not_a_run(trained, tmp_path):
    run, env = trained
    (tmp_path / "notes.txt").write_text("mine\n")
    before = snapshot(tmp_path)
    result = invoke("generate", str(tmp_path), "-p", "the", env=env)
    assert_clean_failure(result, 1, "is not a run directory", "config.yaml is missing")
    assert snapshot(tmp_path) == before


def test_a_run_without_a_checkpoint(trained, tmp_path):
    run, env = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    shutil.rmtree(copy / "checkpoints")
    before = snapshot(copy)
    result = invoke("generate", str(copy), "-p", "the", env=env)
    assert_clean_failure(result, 1, "has no complete checkpoint")
    assert snapshot(copy) == before


def test_a_run_without_its_tokenizer_and_without_the_data_to_rebuild_it(trained, tmp_path):
    run, env = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    shutil.rmtree(copy / "tokenizer")
    corpus = run.parent / "corpus.txt"
    moved = tmp_path / "corpus.txt"
    shutil.move(corpus, moved)
    try:
        result = invoke("generate", str(copy), "-p", "the", env={**env, "LLMBRICKS_CACHE_DIR":
                                                                   str(tmp_path / "empty-cache")})
    finally:
        shutil.move(moved, corpus)
    assert_clean_failure(result, 2, "has no saved tokenizer (tokenizer/ is missing)",
                         "corpus.txt does not exist")


def test_a_prompt_longer_than_the_context_is_cropped_not_refused(trained):
    run, env = trained
    prompt = "the king and queen " * 4  # 76 characters; the model's context is 16
    result = invoke("generate", str(run), "-p", prompt, "-n", "5", env=env)
    assert result.code == 0, result.stderr
    assert result.stdout.startswith(prompt) and len(result.stdout) == len(prompt) + 5 + 1


def test_edge_values_that_are_valid(trained):
    run, env = trained
    args = ["-p", "the", "-n", "4", "-t", "1e-40", "--top-k", "100000", "--top-p", "1", "--seed",
            str(2**63 - 1)]
    result = invoke("generate", str(run), *args, env=env)
    assert result.code == 0, result.stderr
    assert len(result.stdout) == len("the") + 4 + 1
    assert invoke("generate", str(run), "-p", "the", "-n", "0", env=env).stdout == "the\n"
