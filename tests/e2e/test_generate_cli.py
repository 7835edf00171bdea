"""`llmbricks generate` from a config (a randomly initialized model, seeded by the config)."""

from __future__ import annotations

import pytest

from tests.conftest import EXAMPLES, run_cli

QUICKSTART = str(EXAMPLES / "configs" / "quickstart.yaml")


@pytest.mark.slow
@pytest.mark.data_files("gpt2.tiktoken")
def test_the_books_untrained_124m_through_the_cli(tmp_path):
    config = tmp_path / "gpt2.yaml"
    config.write_text("model:\n  preset: gpt2-small\n  tokenizer: tiktoken\nseed: 123\n")
    result = run_cli("generate", "--config", str(config), "--prompt", "Hello, I am", "-n", "10")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Hello, I am Featureiman Byeswickattribute argue logger Normandy Compton analogous\n"


@pytest.mark.data_files("tinyshakespeare.txt")
def test_sampling_is_seeded_and_streaming_prints_the_same(tmp_path):
    env = {"LLMBRICKS_CACHE_DIR": str(tmp_path)}
    args = ["generate", "--config", QUICKSTART, "--set", "model.n_layers=1", "--prompt", "ROMEO:",
            "-n", "30", "-t", "1.0", "--top-k", "20", "--seed", "3"]
    first = run_cli(*args, env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("ROMEO:") and len(first.stdout) == len("ROMEO:") + 30 + 1
    assert run_cli(*args, env=env).stdout == first.stdout
    assert run_cli(*args, "--stream", env=env).stdout == first.stdout
    assert run_cli(*args, "--no-cache", env=env).stdout == first.stdout


def test_generate_usage_errors():
    neither = run_cli("generate", "--prompt", "hi")
    assert neither.returncode == 2 and "give a RUN (run or model directory) or --config CONFIG" in neither.stderr
    bad = run_cli("generate", "--config", QUICKSTART, "--prompt", "hi", "--top-p", "1.5")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


@pytest.mark.data_files("tinyshakespeare.txt")
def test_prompt_lookup_prints_the_same_greedy_text(tmp_path):
    env = {"LLMBRICKS_CACHE_DIR": str(tmp_path)}
    args = ["generate", "--config", QUICKSTART, "--set", "model.n_layers=1",
            "--prompt", "ROMEO: to be, or not to be, or", "-n", "40"]
    plain = run_cli(*args, env=env)
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.startswith("ROMEO: to be, or not to be, or") and len(plain.stdout) == 30 + 40 + 1
    assert run_cli(*args, "--prompt-lookup", "5", env=env).stdout == plain.stdout
    assert run_cli(*args, "--prompt-lookup", "5", "--stream", env=env).stdout == plain.stdout
    sampled = run_cli(*args, "--prompt-lookup", "5", "-t", "0.8", env=env)
    assert sampled.returncode == 2 and "--prompt-lookup needs greedy decoding" in sampled.stderr
