"""The book's two prompt styles (chapter 7): Alpaca, and Phi-3's chat tags (exercise 7.1).

Each template splits a record's text in two: ``prompt(record)`` is everything up to and
including the response marker, ``response(record)`` is the ``output``. Their concatenation is the
book's full training text, character for character:

- alpaca: ``format_input(entry) + f"\\n\\n### Response:\\n{entry['output']}"``
- phi3: the exercise's ``format_input`` + ``f"\\n<|assistant|>:\\n{entry['output']}"``
"""

from __future__ import annotations

from collections.abc import Mapping

from llmbricks.core.interfaces import PromptTemplate

ALPACA_PREAMBLE = ("Below is an instruction that describes a task. "
                   "Write a response that appropriately completes the request.")


class AlpacaTemplate(PromptTemplate):
    """The book's Alpaca prompt: a preamble, ### Instruction, ### Input (if any), ### Response."""

    name = "alpaca"

    def prompt(self, record: Mapping[str, str]) -> str:
        text = f"{ALPACA_PREAMBLE}\n\n### Instruction:\n{record['instruction']}"
        if record.get("input"):
            text += f"\n\n### Input:\n{record['input']}"
        return text + "\n\n### Response:\n"


class Phi3Template(PromptTemplate):
    """Phi-3's chat tags (the book's exercise 7.1): <|user|>, the instruction and input, <|assistant|>."""

    name = "phi3"

    def prompt(self, record: Mapping[str, str]) -> str:
        text = f"<|user|>\n{record['instruction']}"
        if record.get("input"):
            text += f"\n{record['input']}"
        return text + "\n<|assistant|>:\n"
