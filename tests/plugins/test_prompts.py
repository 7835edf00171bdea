"""The built-in prompt templates: the book's exact texts (chapter 7 and exercise 7.1)."""

from __future__ import annotations

import pytest

from llmbricks.core.config import load_config
from llmbricks.core.errors import ConfigError
from llmbricks.core.interfaces import PromptTemplate
from llmbricks.core.registry import get_registry

#: The book's example record (section 7.2).
BOOK = {"instruction": "Identify the correct spelling of the following word.",
        "input": "Ocassion", "output": "The correct spelling is 'Occasion.'"}
NO_INPUT = {"instruction": "What is an antonym of 'complicated'?", "input": "",
            "output": "An antonym of 'complicated' is 'simple'."}


def template(name: str) -> PromptTemplate:
    return get_registry().build("prompt", name)


def book_format_input(entry: dict[str, str]) -> str:
    """The book's ``format_input`` (listing 7.2), verbatim."""
    instruction_text = (
        f"Below is an instruction that describes a task. "
        f"Write a response that appropriately completes the request."
        f"\n\n### Instruction:\n{entry['instruction']}"
    )
    input_text = f"\n\n### Input:\n{entry['input']}" if entry["input"] else ""
    return instruction_text + input_text


def book_phi3_format_input(entry: dict[str, str]) -> str:
    """The book's solution to exercise 7.1, verbatim."""
    instruction_text = f"<|user|>\n{entry['instruction']}"
    input_text = f"\n{entry['input']}" if entry["input"] else ""
    return instruction_text + input_text


def test_both_templates_are_registered_prompts():
    registry = get_registry()
    assert {"alpaca", "phi3"} <= set(registry.names("prompt"))
    assert all(isinstance(template(name), PromptTemplate) for name in ("alpaca", "phi3"))


def test_alpaca_on_the_books_example():
    alpaca = template("alpaca")
    assert alpaca.prompt(BOOK) == (
        "Below is an instruction that describes a task. Write a response that appropriately "
        "completes the request.\n\n### Instruction:\nIdentify the correct spelling of the "
        "following word.\n\n### Input:\nOcassion\n\n### Response:\n")
    assert alpaca.response(BOOK) == "The correct spelling is 'Occasion.'"
    full = alpaca.prompt(BOOK) + alpaca.response(BOOK)
    assert full == book_format_input(BOOK) + f"\n\n### Response:\n{BOOK['output']}"


def test_alpaca_leaves_out_an_empty_input():
    alpaca = template("alpaca")
    assert alpaca.prompt(NO_INPUT) == (
        "Below is an instruction that describes a task. Write a response that appropriately "
        "completes the request.\n\n### Instruction:\nWhat is an antonym of 'complicated'?"
        "\n\n### Response:\n")
    assert "### Input" not in alpaca.prompt(NO_INPUT)
    assert alpaca.prompt(NO_INPUT) + alpaca.response(NO_INPUT) == (
        book_format_input(NO_INPUT) + f"\n\n### Response:\n{NO_INPUT['output']}")


def test_phi3_on_the_books_example_and_without_input():
    phi3 = template("phi3")
    assert phi3.prompt(BOOK) == ("<|user|>\nIdentify the correct spelling of the following word."
                                 "\nOcassion\n<|assistant|>:\n")
    assert phi3.prompt(NO_INPUT) == "<|user|>\nWhat is an antonym of 'complicated'?\n<|assistant|>:\n"
    for record in (BOOK, NO_INPUT):
        assert phi3.prompt(record) + phi3.response(record) == (
            book_phi3_format_input(record) + f"\n<|assistant|>:\n{record['output']}")


def test_the_config_picks_a_template_by_name():
    config = load_config({"data": {"prompt": "phi3"}})
    assert config.data.prompt.name == "phi3"
    with pytest.raises(ConfigError, match="data.prompt: unknown prompt 'alpacca' - did you mean 'alpaca'"):
        load_config({"data": {"prompt": "alpacca"}})
