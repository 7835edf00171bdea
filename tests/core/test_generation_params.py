"""Generation parameters: one policy for the CLI and the Python API, one line naming the value."""

from __future__ import annotations

import math

import pytest
import torch

from llmbricks.core.config import MAX_SEED, load_config
from llmbricks.core.errors import ConfigError, DataError
from llmbricks.core.tasks.generation import (
    MAX_NEW_TOKENS,
    GenerationError,
    check_generation_params,
    generate,
    generate_ids,
    next_token,
    stop_token_id,
)

# (parameter, bad value, what the API message says, what the CLI message says)
BAD = [
    ("max_new_tokens", -1, "max_new_tokens must be a whole number from 0 to", "--max-new-tokens -1: "),
    ("max_new_tokens", MAX_NEW_TOKENS + 1, "max_new_tokens must be", "--max-new-tokens 16777217: "),
    ("max_new_tokens", 2.5, "max_new_tokens must be a whole number", "--max-new-tokens 2.5: "),
    ("max_new_tokens", True, "max_new_tokens must be a whole number", "--max-new-tokens True: "),
    ("temperature", -0.5, "temperature must be a finite number >= 0 (0 = greedy), got -0.5",
     "--temperature -0.5: temperature must be"),
    ("temperature", math.nan, "temperature must be a finite number", "--temperature nan: "),
    ("temperature", math.inf, "temperature must be a finite number", "--temperature inf: "),
    ("temperature", "hot", "temperature must be a finite number", "--temperature 'hot': "),
    ("top_k", 0, "top_k must be a whole number >= 1, got 0", "--top-k 0: top-k must be"),
    ("top_k", 2.5, "top_k must be a whole number >= 1", "--top-k 2.5: "),
    ("top_p", 0.0, "top_p must be in (0, 1], got 0.0", "--top-p 0.0: top-p must be in (0, 1]"),
    ("top_p", 1.5, "top_p must be in (0, 1], got 1.5", "--top-p 1.5: top-p must be in (0, 1]"),
    ("top_p", math.nan, "top_p must be in (0, 1]", "--top-p nan: "),
    ("seed", -1, f"seed must be a whole number from 0 to {MAX_SEED}, got -1", "--seed -1: "),
    ("seed", 2**64, "seed must be a whole number", f"--seed {2**64}: seed must"),
    ("stop", "", "stop must name a special token", "--stop '': stop must name"),
    ("stop", 3, "stop must name a special token", "--stop 3: "),
    ("max_context", 0, "max_context must be a whole number from 1 to", "--max-context 0: "),
    ("prompt_lookup", -1, "prompt_lookup must be >= 0 (0 = off), got -1", "--prompt-lookup -1: "),
    ("lookup_ngram", 0, "lookup_ngram must be >= 1, got 0", "--lookup-ngram 0: "),
]


@pytest.mark.parametrize(("name", "value", "api", "cli"), BAD,
                         ids=[f"{b[0]}={b[1]!r}" for b in BAD])
def test_a_bad_value_is_one_line_naming_the_parameter_or_the_flag(name, value, api, cli):
    with pytest.raises(GenerationError) as raised:
        check_generation_params(**{name: value})
    assert api in str(raised.value) and "\n" not in str(raised.value)
    with pytest.raises(GenerationError) as raised:
        check_generation_params(**{name: value}, cli=True)
    assert str(raised.value).startswith(cli)


def test_the_error_is_a_config_error_and_still_a_value_error():
    with pytest.raises(GenerationError) as raised:
        check_generation_params(top_p=2.0)
    assert isinstance(raised.value, ConfigError) and isinstance(raised.value, ValueError)
    assert raised.value.exit_code == 2


@pytest.mark.parametrize("good", [
    {}, {"max_new_tokens": 0}, {"max_new_tokens": MAX_NEW_TOKENS}, {"temperature": 0},
    {"temperature": 1e-30}, {"temperature": 1e30}, {"top_k": 1}, {"top_k": 10**9}, {"top_p": 1.0},
    {"top_p": 1e-9}, {"seed": 0}, {"seed": MAX_SEED}, {"stop": "<|endoftext|>"},
    {"max_context": 1}, {"prompt_lookup": 100}, {"top_k": None, "top_p": None, "seed": None},
], ids=repr)
def test_good_values_pass(good):
    check_generation_params(**good)


@pytest.fixture(scope="module")
def tiny():
    """A 1-layer char model over 'abc' with no special tokens (nothing is trained)."""
    from llmbricks.core.build import build_model, build_tokenizer

    config = load_config({"model": {"tokenizer": {"name": "char", "chars": "abc "},
                                    "context_length": 8, "emb_dim": 16, "n_layers": 1,
                                    "n_heads": 2}})
    tokenizer = build_tokenizer(config)
    torch.manual_seed(0)
    return build_model(config, tokenizer=tokenizer), tokenizer


def test_the_api_applies_the_same_policy_before_any_work(tiny):
    model, tokenizer = tiny
    with pytest.raises(GenerationError, match=r"^top_p must be in \(0, 1\], got 1.5$"):
        generate(model, tokenizer, "ab", top_p=1.5)
    with pytest.raises(GenerationError, match=r"^seed must be a whole number"):
        generate_ids(model, [[1, 2]], seed=2**70)
    with pytest.raises(GenerationError, match=r"^max_new_tokens must be"):
        generate_ids(model, [[1, 2]], max_new_tokens=10**9)


@pytest.mark.parametrize(("prompt", "message"), [
    ("", "the prompt is empty: give some text to continue"),
    ([], "no prompt: give a string, or a list of strings for a batch"),
    (["ab", ""], "prompt 1 is empty"),
    (["ab", 3], "prompt 1 must be a string, got int"),
    (["ab", "abc"], "prompts in one batch must have the same length in tokens (got [2, 3])"),
])
def test_bad_prompts_are_generation_errors(tiny, prompt, message):
    model, tokenizer = tiny
    with pytest.raises(GenerationError) as raised:
        generate(model, tokenizer, prompt)
    assert message in str(raised.value)


def test_a_prompt_with_a_lone_surrogate_names_the_byte(tiny):
    model, tokenizer = tiny
    with pytest.raises(DataError, match="the prompt: invalid UTF-8 at byte offset 2"):
        generate(model, tokenizer, "ab\udcff")  # what Python makes of a 0xff byte in argv


@pytest.mark.parametrize(("prompt", "message"), [
    ([[]], "the prompt is empty: give at least one token"),
    ([[1, 2], [3]], "the prompt must be token ids"),
    ([[[1]]], "the prompt must be [B, T] token ids, got shape [1, 1, 1]"),
])
def test_bad_token_prompts(tiny, prompt, message):
    with pytest.raises(GenerationError) as raised:
        generate_ids(tiny[0], prompt)
    assert message in str(raised.value)


def test_no_tokenizer_is_a_clear_error(tiny):
    with pytest.raises(GenerationError, match="generate needs the model's tokenizer"):
        generate(tiny[0], None, "ab")


def test_stop_must_be_a_special_token_of_the_tokenizer(tiny):
    _, tokenizer = tiny
    assert stop_token_id(tokenizer, None) is None  # no <|endoftext|>: run to max_new_tokens
    with pytest.raises(GenerationError, match=r"^--stop '<\|eot\|>': stop is not a special token "
                                              r"of this tokenizer \(it has none\)$"):
        stop_token_id(tokenizer, "<|eot|>", cli=True)
    with pytest.raises(GenerationError, match="stop is not a special token"):
        generate(tiny[0], tokenizer, "ab", stop="<|eot|>")


def test_a_tiny_temperature_samples_the_argmax_instead_of_overflowing():
    logits = torch.tensor([[1.0, 3.0, 2.0], [50.0, -50.0, 49.0]])
    generator = torch.Generator().manual_seed(0)
    picked = next_token(logits, temperature=1e-40, generator=generator)
    assert picked.tolist() == [1, 0]


def test_stop_names_a_special_token_that_ends_the_text():
    from llmbricks.core.build import build_tokenizer

    config = load_config({"model": {"tokenizer": {"name": "char", "chars": "abc ",
                                                  "special_tokens": ["<|end|>"]}}})
    tokenizer = build_tokenizer(config)
    assert stop_token_id(tokenizer, "<|end|>") == tokenizer.special_tokens["<|end|>"] == 4
    with pytest.raises(GenerationError, match=r"stop is not a special token of this tokenizer "
                                              r"\(it has '<\|end\|>'\), got '<\|eot\|>'"):
        stop_token_id(tokenizer, "<|eot|>")
