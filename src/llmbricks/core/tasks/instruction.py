"""Instruction finetuning (the book's chapter 7): splits, encoding, padding and masking, batches.

A record ``{instruction, input, output}`` becomes ``prompt + response`` through a prompt template
(kind ``prompt``). The prompt and the response are encoded apart and concatenated, so the number
of prompt tokens is exact (for the ``mask_prompt`` option); with GPT-2's BPE and the built-in
templates this gives the same ids as encoding the whole text.

``collate`` is the book's ``custom_collate_fn``: each example gets one end-of-text token, the batch
is padded with end-of-text to its longest example (+1), the inputs are ``padded[:-1]`` and the
targets ``padded[1:]``; the first end-of-text of each row stays a target (the model learns to
stop) and every later padding target is ``IGNORE_INDEX``. ``mask_prompt`` (exercise 7.2) also
ignores the targets that are prompt tokens. The loss is the mean cross-entropy over the targets
that are not ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError, InputError
from ..interfaces import PromptTemplate, Tokenizer
from ..registry import get_registry
from ..train.batches import ShardedEpochs
from ..train.splits import check_fractions, split_sizes
from .generation import generate_ids

#: The template used when ``data.prompt`` is null.
DEFAULT_TEMPLATE = "alpaca"
#: Targets with this value add nothing to the loss (PyTorch's ``cross_entropy`` default).
IGNORE_INDEX = -100
ENDOFTEXT = "<|endoftext|>"


@dataclass(frozen=True)
class Example:
    """One encoded record: prompt then response token ids, and how many are the prompt's."""

    ids: list[int]
    prompt_length: int


#: The order the three splits are sliced in: ours, or the book's (test before validation).
SplitOrder = Literal["train-val-test", "train-test-val"]


def split_records(records: Sequence[Any], fractions: Sequence[float], *, shuffle: bool = False,
                  seed: int = 123, order: SplitOrder = "train-val-test",
                  ) -> tuple[list[Any], list[Any], list[Any]]:
    """``(train, val, test)`` cut from the file's order (or a seeded shuffle) as the book does.

    ``fractions`` are train/val/test: ``train_end = int(n * f0)``, ``val_end = train_end +
    int(n * f1)``, test is the rest when they sum to 1, else the next ``int(n * f2)`` records.
    1,100 records at (0.85, 0.10, 0.05) give 935 / 110 / 55. ``order="train-test-val"`` slices
    the test records before the validation ones, as the book: (0.85, 0.05, 0.10) then gives its
    test records 935-1044 (those of its instruction-data-with-response.json) and val 1045-1099.
    """
    try:
        check_fractions(fractions)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    items = list(records)
    if shuffle:
        generator = torch.Generator().manual_seed(seed)
        items = [items[i] for i in torch.randperm(len(items), generator=generator).tolist()]
    sizes = split_sizes(len(items), fractions)
    middle, last = (1, 2) if order == "train-val-test" else (2, 1)
    a = sizes[0]
    b = a + sizes[middle]
    parts = {"train": items[:a], middle: items[a:b], last: items[b:b + sizes[last]]}
    for name, index in (("training", "train"), ("validation", 1)):
        fraction = fractions[0 if index == "train" else 1]
        if fraction > 0 and not parts[index]:
            raise InputError(f"{len(items)} instruction records are too few: the {name} split "
                             f"({fraction:g} of them) is empty; use more records or change "
                             "train.trainer.split")
    return parts["train"], parts[1], parts[2]


def prompt_template(config: Any, registry: Any = None) -> PromptTemplate:
    """The config's ``data.prompt`` template (``DEFAULT_TEMPLATE`` when it is null)."""
    registry = registry or get_registry()
    return registry.build("prompt", config.data.prompt or DEFAULT_TEMPLATE)


def instruction_prompt(config: Any, instruction: str, input: str = "",
                       registry: Any = None) -> str:
    """What a run's model continues to answer ``instruction`` (and ``input``): its template's prompt."""
    return prompt_template(config, registry).prompt(
        {"instruction": instruction, "input": input, "output": ""})


def end_of_text_id(tokenizer: Tokenizer | None) -> int:
    """The tokenizer's ``<|endoftext|>`` id, which pads batches and ends every response."""
    if tokenizer is None:
        raise ConfigError("model.tokenizer: instruction finetuning needs a tokenizer with an "
                          f"{ENDOFTEXT} special token (e.g. tiktoken); none is set")
    eot = tokenizer.special_tokens.get(ENDOFTEXT)
    if eot is None:
        raise ConfigError(f"model.tokenizer: '{tokenizer.name}' has no {ENDOFTEXT} special token, "
                          "which instruction finetuning pads and stops with; use tiktoken (gpt2) "
                          f"or add special_tokens: ['{ENDOFTEXT}'] to the tokenizer")
    return eot


def encode_example(tokenizer: Tokenizer, template: PromptTemplate,
                   record: Mapping[str, str]) -> Example:
    """Encode ``template.prompt(record)`` and ``template.response(record)`` apart, concatenated."""
    prompt = tokenizer.encode(template.prompt(record))
    response = tokenizer.encode(template.response(record))
    return Example(ids=prompt + response, prompt_length=len(prompt))


def collate(examples: Sequence[Example | Sequence[int]], pad_id: int, *,
            allowed_max_length: int | None = None, mask_prompt: bool = False,
            ignore_index: int = IGNORE_INDEX) -> tuple[Tensor, Tensor]:
    """The book's ``custom_collate_fn``: ``(inputs, targets)``, both ``[B, T]`` int64.

    ``examples`` are ``Example``s or plain id lists (no prompt to mask). Target ``j`` of a row is
    the token at ``j + 1``; a row of ``n`` ids has real targets up to ``j = n - 1`` (its one
    end-of-text), later ones are ``ignore_index``. Positions, not values, decide, so an
    end-of-text id inside the text itself stays a target.
    """
    if not examples:
        raise ValueError("collate needs at least one example")
    rows = [e if isinstance(e, Example) else Example(list(e), 0) for e in examples]
    width = max(len(row.ids) for row in rows) + 1  # every row gets at least one end-of-text
    padded = torch.full((len(rows), width), pad_id, dtype=torch.long)
    for b, row in enumerate(rows):
        padded[b, :len(row.ids)] = torch.as_tensor(row.ids, dtype=torch.long)
    inputs, targets = padded[:, :-1].clone(), padded[:, 1:].clone()
    columns = torch.arange(width - 1)
    lengths = torch.tensor([len(row.ids) for row in rows])
    targets[columns[None, :] >= lengths[:, None]] = ignore_index
    if mask_prompt:
        prompts = torch.tensor([row.prompt_length for row in rows])
        targets[columns[None, :] < (prompts - 1)[:, None]] = ignore_index
    if allowed_max_length is not None:
        inputs, targets = inputs[:, :allowed_max_length], targets[:, :allowed_max_length]
    return inputs, targets


def instruction_loss(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
    """Mean cross-entropy over the targets that are not ``IGNORE_INDEX`` (0 when all are)."""
    inputs, targets = batch
    logits = model(inputs).float()
    total = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX,
                            reduction="sum")
    return total / (targets != IGNORE_INDEX).sum().clamp(min=1)


@dataclass
class InstructionBatches(ShardedEpochs):
    """Padded batches of examples that can restart mid-epoch and split across ranks.

    An epoch's order is a pure function of ``(seed, epoch)`` (or the examples' order without
    ``shuffle``); it is cut into global batches of ``batch_size x world_size`` examples, and rank
    ``r`` collates the ``r``-th slice of each (``core.train.batches.ShardedEpochs``).
    """

    examples: list[Example]
    batch_size: int
    pad_id: int
    allowed_max_length: int | None = None
    mask_prompt: bool = False

    def __post_init__(self) -> None:
        self._require_batches(f"{len(self.examples)} examples make no batch of "
                              f"{self.batch_size * self.world_size}; use a smaller batch_size "
                              "or more records")

    def size(self) -> int:
        return len(self.examples)

    def gather(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        return collate([self.examples[i] for i in indices], self.pad_id,
                       allowed_max_length=self.allowed_max_length, mask_prompt=self.mask_prompt)

    def all(self) -> list[tuple[Tensor, Tensor]]:
        """Every example once, in order, in batches (the last one may be smaller)."""
        return [self.gather(range(i, min(i + self.batch_size, len(self.examples))))
                for i in range(0, len(self.examples), self.batch_size)]

    def spread(self, count: int) -> list[tuple[Tensor, Tensor]]:
        """``count`` fixed batches of examples spread evenly over the split (for evaluation)."""
        n = len(self.examples)
        wanted = min(n, count * self.batch_size)
        picked = torch.linspace(0, n - 1, wanted).round().long().unique().tolist() if n else []
        return [self.gather(picked[i:i + self.batch_size])
                for i in range(0, len(picked), self.batch_size)]

    def mean_tokens(self) -> float:
        """Average input tokens per example (the token budget's unit, as batches vary)."""
        limit = self.allowed_max_length or 1 << 62
        return sum(min(len(e.ids), limit) for e in self.examples) / max(1, len(self.examples))


@torch.no_grad()
def mean_loss(model: nn.Module, batches: Sequence[tuple[Tensor, Tensor]],
              device: torch.device) -> float | None:
    """Mean of the batches' losses (the book's ``calc_loss_loader``); ``None`` for none."""
    if not batches:
        return None
    losses = [instruction_loss(model, (x.to(device), y.to(device))) for x, y in batches]
    return float(torch.stack(losses).mean())


def extract_response(text: str) -> str:
    """The generated text after the prompt, stripped (as the book extracts ``model_response``)."""
    return text.strip()


@torch.no_grad()
def generate_responses(model: nn.Module, tokenizer: Tokenizer, template: PromptTemplate,
                       records: Sequence[Mapping[str, Any]], *, max_new_tokens: int = 256,
                       max_context: int | None = None, batch_size: int = 8,
                       on_record: Callable[[int], None] | None = None) -> list[str]:
    """Greedy responses to each record's prompt, stopped at end-of-text (one string per record).

    Prompts of the same token length are generated together (up to ``batch_size`` at a time)
    with the KV cache; ``max_context`` crops what the model sees, as the book's ``context_size``.
    """
    eot = end_of_text_id(tokenizer)
    encoded = [tokenizer.encode(template.prompt(record)) for record in records]
    groups: dict[int, list[int]] = {}
    for index, ids in enumerate(encoded):
        groups.setdefault(len(ids), []).append(index)
    responses = [""] * len(records)
    done = 0
    for indices in groups.values():
        for start in range(0, len(indices), batch_size):
            chunk = indices[start:start + batch_size]
            result = generate_ids(model, [encoded[i] for i in chunk], max_new_tokens=max_new_tokens,
                                  stop_token=eot, max_context=max_context)
            for i, new in zip(chunk, result.new_tokens, strict=True):
                if new and new[-1] == eot:
                    new = new[:-1]
                responses[i] = extract_response(tokenizer.decode(new))
            done += len(chunk)
            if on_record is not None:
                on_record(done)
    return responses
