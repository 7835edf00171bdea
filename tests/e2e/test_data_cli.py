"""`llmbricks tokenizer ...` and `llmbricks data ...` as a user runs them."""

from __future__ import annotations

import json

import pytest

from tests.conftest import EXAMPLES, run_cli
from tests.e2e.test_cli import assert_one_line_error

QUICKSTART = str(EXAMPLES / "configs" / "quickstart.yaml")
SENTENCE = "Hello, do you like tea? <|endoftext|> In the sunlit terraces of someunknownPlace."
IDS = "15496 11 466 345 588 8887 30 220 50256 554 262 4252 18250 8812 2114 286 617 34680 27271 13"


@pytest.mark.data_files("gpt2.tiktoken")
def test_encode_decode_inspect_with_gpt2():
    encoded = run_cli("tokenizer", "encode", "--allow-special", SENTENCE)
    assert encoded.returncode == 0, encoded.stderr
    assert encoded.stdout.strip() == IDS
    decoded = run_cli("tokenizer", "decode", *IDS.split())
    assert decoded.stdout.rstrip("\n") == SENTENCE
    inspected = run_cli("tokenizer", "inspect", "Hello, do you like tea?")
    assert inspected.stdout.splitlines()[0] == "Hello|,| do| you| like| tea|?"
    assert "15496:'Hello'" in inspected.stdout and "7 tokens, 23 characters" in inspected.stdout


@pytest.mark.data_files("gpt2.tiktoken")
def test_encode_reads_stdin_and_prints_json():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "llmbricks", "tokenizer", "encode", "--json"],
                            input="Hello, world", capture_output=True, text=True)
    assert json.loads(result.stdout) == [15496, 11, 995]


@pytest.mark.data_files("tinyshakespeare.txt")
def test_train_a_bpe_then_use_it(tmp_path):
    out = tmp_path / "bpe"
    trained = run_cli("tokenizer", "train", QUICKSTART, "--set", "model.tokenizer={name: bpe, vocab_size: 300}",
                      "--out", str(out))
    assert trained.returncode == 0, trained.stderr
    assert "trained bpe on tinyshakespeare" in trained.stdout and "vocabulary 300" in trained.stdout
    ids = run_cli("tokenizer", "encode", "-t", str(out), "First Citizen:").stdout.split()
    assert all(int(i) < 300 for i in ids)
    assert run_cli("tokenizer", "decode", "-t", str(out), *ids).stdout.rstrip("\n") == "First Citizen:"


@pytest.mark.data_files("tinyshakespeare.txt")
def test_data_prepare_then_reuse(tmp_path):
    env = {"LLMBRICKS_CACHE_DIR": str(tmp_path)}
    first = run_cli("data", "prepare", QUICKSTART, "--json", env=env)
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["tokens"] == 1_115_394 and report["vocab_size"] == 65 and report["vocab_used"] == 65
    assert report["dtype"] == "uint16" and report["tokenizer_trained"] is True
    assert report["cache"].startswith(str(tmp_path))
    again = json.loads(run_cli("data", "prepare", QUICKSTART, "--json", env=env).stdout)
    assert again["cache"] == report["cache"] and again["tokenizer_trained"] is False
    stats = json.loads(run_cli("data", "stats", QUICKSTART, "--json", env=env).stdout)
    assert stats["train_tokens"] + stats["val_tokens"] == 1_115_394
    assert stats["windows"]["train"] == (stats["train_tokens"] - 64 + 63) // 64


@pytest.mark.data_files("gpt2.tiktoken", "the-verdict.txt")
def test_data_prepare_with_gpt2_on_the_verdict(tmp_path):
    result = run_cli("data", "prepare", QUICKSTART, "--set", "model.tokenizer=tiktoken",
                     "--set", "data.source=the_verdict", env={"LLMBRICKS_CACHE_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert "tokens:     5,145 from 20,479 characters" in result.stdout


def test_data_and_tokenizer_errors():
    assert_one_line_error(run_cli("data", "prepare", QUICKSTART, "--set", "data.source=sms_spam"),
                          "data.source: 'sms_spam' yields labeled records, not text")
    assert_one_line_error(run_cli("tokenizer", "encode", "-t", "bpe", "hi"),
                          "--tokenizer: 'bpe' learns its vocabulary from data; train it first")
    assert_one_line_error(run_cli("tokenizer", "encode", "-t", "tiktokn", "hi"),
                          "unknown tokenizer 'tiktokn' - did you mean 'tiktoken'?")
    assert_one_line_error(run_cli("data", "prepare", QUICKSTART, "--set", "data.source={name: text, path: /nonexistent}"),
                          "/nonexistent does not exist")  # a path in the config: exit 2


def test_data_stats_prints_the_first_batches_in_order(tmp_path):
    """The book prints its dataloader's first batch: inputs, and targets shifted by one."""
    env = {"LLMBRICKS_CACHE_DIR": str(tmp_path)}
    args = ("data", "stats", QUICKSTART, "--set", "data.source=python_docs", "--set",
            "model.context_length=8", "--set", "train.batch_size=3", "--batches", "2")
    report = json.loads(run_cli(*args, "--json", env=env).stdout)
    first, second = report["first_batches"]
    assert [len(first["inputs"]), len(first["inputs"][0])] == [3, 8]
    for batch in (first, second):
        for x, y in zip(batch["inputs"], batch["targets"], strict=True):
            assert x[1:] == y[:-1]
    assert first["inputs"][1][0] == first["targets"][0][-1]  # stride = context: windows abut
    assert second["inputs"][0][0] == first["targets"][2][-1]
    text = run_cli(*args, env=env).stdout
    assert text.count("inputs -> targets") == 2 and f"{first['inputs'][0]} -> " in text
    bad = run_cli(*args[:-1], "-1", env=env)
    assert bad.returncode == 2 and "--batches" in bad.stderr
