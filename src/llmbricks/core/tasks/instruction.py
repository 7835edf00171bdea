"""Instruction finetuning (the book's chapter 7): splits, encoding, padding and masking, batches.

A record ``{instruction, input, output}`` becomes ``prompt + response`` through a prompt template
(kind ``prompt``): ``data.prompt``, or when it is null the model's own chat template if its
tokenizer carries one (an imported instruct checkpoint), else alpaca (``default_prompt``). The
prompt and the response are encoded apart and concatenated, so the number of prompt tokens is
exact (for the ``mask_prompt`` option); with GPT-2's BPE and the built-in templates this gives the
same ids as encoding the whole text.

Special tokens: those the template writes (``<|start_header_id|>``, ``<|eot_id|>``...) become
their ids, while special-looking text in a record stays text, so a record cannot forge a turn
(``encode_templated``). A template that closes the answer with a special token (Llama 3's
``<|eot_id|>``) ends each example with it, in place of ``<|endoftext|>`` (``end_token``).

``collate`` is the book's ``custom_collate_fn``: each example gets one end-of-text token, the batch
is padded with end-of-text to its longest example (+1), the inputs are ``padded[:-1]`` and the
targets ``padded[1:]``; the first end-of-text of each row stays a target (the model learns to
stop) and every later padding target is ``IGNORE_INDEX``. ``mask_prompt`` (exercise 7.2) also
ignores the targets that are prompt tokens. The loss is the mean cross-entropy over the targets
that are not ignored.
"""

from __future__ import annotations

import functools
import re
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
from . import generation
from .generation import generate_ids

#: The template used when ``data.prompt`` is null and the tokenizer has no chat template.
DEFAULT_TEMPLATE = "alpaca"
#: The prompt component that renders a model's own Jinja chat template (built by name: the core
#: knows no plugin).
CHAT_TEMPLATE = "chat_template"
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


def default_prompt(tokenizer: Tokenizer | None) -> str | dict[str, Any]:
    """The template a null ``data.prompt`` stands for, as a component spec.

    A model that ships a chat template (an import of Llama 3 Instruct, Qwen...) answers best in
    that format, so its tokenizer's template (with its bos/eos tokens) is the default; a model
    without one gets ``DEFAULT_TEMPLATE``, the book's alpaca.
    """
    template = getattr(tokenizer, "chat_template", None)
    if not isinstance(template, str) or not template.strip():
        return DEFAULT_TEMPLATE
    spec: dict[str, Any] = {"name": CHAT_TEMPLATE, "template": template}
    for key in ("bos_token", "eos_token"):
        value = getattr(tokenizer, key, None)
        if isinstance(value, str):
            spec[key] = value
    return spec


def prompt_template(config: Any, registry: Any = None,
                    tokenizer: Tokenizer | None = None) -> PromptTemplate:
    """The config's ``data.prompt`` template; when it is null, ``default_prompt(tokenizer)``.

    The trainer and ``generate --instruction`` both call this, so a run is asked in the format it
    was trained in.
    """
    registry = registry or get_registry()
    return registry.build("prompt", config.data.prompt or default_prompt(tokenizer))


def instruction_record(instruction: str, input: str = "") -> dict[str, str]:
    """A question as a record (no output), for a template's ``prompt``."""
    return {"instruction": instruction, "input": input, "output": ""}


def instruction_prompt(config: Any, instruction: str, input: str = "",
                       registry: Any = None, tokenizer: Tokenizer | None = None) -> str:
    """What a run's model continues to answer ``instruction`` (and ``input``): its template's prompt."""
    return prompt_template(config, registry, tokenizer).prompt(instruction_record(instruction, input))


def answer(model: nn.Module, tokenizer: Tokenizer, config: Any, instruction: str, input: str = "",
           *, registry: Any = None, stop: str | None = None, **options: Any) -> str:
    """The model's response to ``instruction`` (and ``input``), as ``generate --instruction`` prints it.

    The run's template makes the prompt (``prompt_template``), encoded as in training (only the
    template's special tokens are ids); generation stops at ``stop``, by default the template's
    end token (``<|eot_id|>``) or the tokenizer's own (``generation.generate``'s default); the
    response is stripped, as ``responses.json`` holds it. ``options`` go to ``generation.generate``
    (``max_new_tokens``, ``temperature``, ``on_text``...).
    """
    template = prompt_template(config, registry, tokenizer)
    record = instruction_record(instruction, input)
    prompt = template.prompt(record)
    ids = None
    if tokenizer is not None:
        ids = [encode_prompt(tokenizer, template, record)]
        if stop is None:
            stop = end_token(tokenizer, template)
    text = generation.generate(model, tokenizer, prompt, stop=stop, prompt_ids=ids, **options)
    return extract_response(text)


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


#: A record whose answer shows where a template's turn ends (``template_end_token``).
_PROBE = {"instruction": "Say hello.", "input": "", "output": "Hello."}


@functools.lru_cache(maxsize=8)
def _pattern(names: tuple[str, ...]) -> re.Pattern[str] | None:
    """Matches any of ``names``, longest first (so a token that extends another wins)."""
    if not names:
        return None
    return re.compile("|".join(re.escape(name) for name in sorted(names, key=len, reverse=True)))


def special_pattern(tokenizer: Tokenizer) -> re.Pattern[str] | None:
    """A regex for the tokenizer's special tokens as text; ``None`` when it has none."""
    return _pattern(tuple(sorted(tokenizer.special_tokens)))


def _marker(texts: Sequence[str]) -> str:
    """A private-use character found in none of ``texts``: it brackets the record's specials."""
    for code in range(0xE000, 0xF900):
        marker = chr(code)
        if not any(marker in text for text in texts):
            return marker
    raise InputError("an instruction record uses every private-use character; cannot encode it")


def encode_templated(tokenizer: Tokenizer, render: Callable[[Mapping[str, Any]], str],
                     record: Mapping[str, Any]) -> list[int]:
    """``render(record)`` encoded with the special tokens the template writes as their ids, and
    special-looking text from the record's fields (``<|eot_id|>`` in an instruction) as text.

    Why: a chat template writes its own specials (turn headers, ``<|eot_id|>``), which must be
    ids as the model was trained, but a record that could write them would forge turns (prompt
    injection). A record without specials in its fields is one ``encode`` of the text allowing
    exactly the specials in it, so the ids equal ``AutoTokenizer``'s encoding of
    ``apply_chat_template``'s text. Otherwise the template is rendered once more with each special
    in the fields replaced by a marker: the specials left are the template's. Each stretch of text
    between two of them that holds a marker is encoded as plain text, whole (the record's
    look-alikes included, as ``encode`` would); the rest allowing the template's specials.
    """
    text = render(record)
    pattern = special_pattern(tokenizer)
    if pattern is None:
        return tokenizer.encode(text)
    fields = [value for value in record.values() if isinstance(value, str)]
    if not any(pattern.search(value) for value in fields):
        written = set(pattern.findall(text))
        return tokenizer.encode(text, allowed_special=written) if written else tokenizer.encode(text)
    marker = _marker([text, *fields])
    found: list[str] = []

    def mark(match: re.Match[str]) -> str:
        found.append(match.group())
        return f"{marker}{len(found) - 1}{marker}"

    marked = render({key: pattern.sub(mark, value) if isinstance(value, str) else value
                     for key, value in record.items()})
    markers = re.compile(f"{marker}([0-9]+){marker}")

    def restore(part: str) -> str:
        return markers.sub(lambda m: found[int(m[1])], part)

    if restore(marked) != text:
        raise ConfigError("the prompt template changes the special-looking text of a record "
                          f"({', '.join(sorted(set(found)))}) as it renders it, so its own special "
                          "tokens cannot be told from the record's; remove them from the record")
    written = set(pattern.findall(marked))
    ids: list[int] = []
    pending = ""  # template text and specials, encoded together so the tokenizer's rules apply

    def flush() -> None:
        nonlocal pending
        if pending:
            ids.extend(tokenizer.encode(pending, allowed_special=written))
        pending = ""

    at = 0
    for match in [*pattern.finditer(marked), None]:
        stretch = marked[at:match.start() if match else len(marked)]
        if marker in stretch:
            flush()
            ids.extend(tokenizer.encode(restore(stretch)))
        else:
            pending += stretch
        if match:
            pending += match.group()
            at = match.end()
    flush()
    return ids


def encode_prompt(tokenizer: Tokenizer, template: PromptTemplate,
                  record: Mapping[str, Any]) -> list[int]:
    """The ids of ``template.prompt(record)``: the template's specials as ids, the record's as text."""
    return encode_templated(tokenizer, template.prompt, record)


def template_end_token(tokenizer: Tokenizer, template: PromptTemplate) -> str | None:
    """The special token the template closes an answer with (Llama 3's ``<|eot_id|>``, ChatML's
    ``<|im_end|>``), or ``None`` when it writes none after it (alpaca: the text just ends).

    Found on a probe record: the first special token of its response after the answer.
    """
    pattern = special_pattern(tokenizer)
    if pattern is None:
        return None
    response = template.response(_PROBE)
    at = response.find(_PROBE["output"])
    match = pattern.search(response, at + len(_PROBE["output"]) if at >= 0 else 0)
    return match.group() if match else None


def end_token(tokenizer: Tokenizer, template: PromptTemplate | None = None) -> str | None:
    """The special token that ends every response: the template's own (``template_end_token``),
    else the tokenizer's ``eos_token``, else ``<|endoftext|>``; ``None`` when it has none.

    The same order as generation's default stop token, so a run stops where it was taught to.
    """
    specials = tokenizer.special_tokens
    name = template_end_token(tokenizer, template) if template is not None else None
    if name is None:
        eos = getattr(tokenizer, "eos_token", None)
        name = eos if eos in specials else ENDOFTEXT if ENDOFTEXT in specials else None
    return name


def end_token_id(tokenizer: Tokenizer | None, template: PromptTemplate | None = None) -> int:
    """The id of ``end_token``: it pads batches and ends every example and response."""
    if tokenizer is None:
        return end_of_text_id(tokenizer)  # the one-line error that says a tokenizer is needed
    name = end_token(tokenizer, template)
    return tokenizer.special_tokens[name] if name is not None else end_of_text_id(tokenizer)


def encode_example(tokenizer: Tokenizer, template: PromptTemplate, record: Mapping[str, str],
                   *, end_id: int | None = None) -> Example:
    """Encode ``template.prompt(record)`` and ``template.response(record)`` apart, concatenated.

    Both through ``encode_templated`` (the template's specials are ids, the record's text). The
    response stops before its end token (``end_id``, by default the template's own if it writes
    one: ``<|eot_id|>``), which ``collate`` appends as the one end target; whatever a template
    writes after it (ChatML's newline) is not learned, as generation stops there.
    """
    prompt = encode_prompt(tokenizer, template, record)
    response = encode_templated(tokenizer, template.response, record)
    if end_id is None:
        name = template_end_token(tokenizer, template)
        end_id = tokenizer.special_tokens[name] if name is not None else None
    if end_id is not None and end_id in response:
        response = response[:response.index(end_id)]
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
                       on_record: Callable[[int], None] | None = None,
                       stop_token: int | None = None) -> list[str]:
    """Greedy responses to each record's prompt, stopped at the end token (one string per record).

    The prompts are encoded as in training (``encode_prompt``); ``stop_token`` defaults to
    ``end_token_id(tokenizer, template)``. Prompts of the same token length are generated
    together (up to ``batch_size`` at a time) with the KV cache; ``max_context`` crops what the
    model sees, as the book's ``context_size``.
    """
    eot = stop_token if stop_token is not None else end_token_id(tokenizer, template)
    encoded = [encode_prompt(tokenizer, template, record) for record in records]
    groups: dict[int, list[int]] = {}
    for index, ids in enumerate(encoded):
        groups.setdefault(len(ids), []).append(index)
    responses = [""] * len(records)
    done = 0
    for indices in groups.values():
        for start in range(0, len(indices), batch_size):
            chunk = indices[start:start + batch_size]
            result = generate_ids(model, [encoded[i] for i in chunk], max_new_tokens=max_new_tokens,
                                  stop_token=eot, max_context=max_context,
                                  vocab_limit=tokenizer.vocab_size)
            for i, new in zip(chunk, result.new_tokens, strict=True):
                if new and new[-1] == eot:
                    new = new[:-1]
                responses[i] = extract_response(tokenizer.decode(new))
            done += len(chunk)
            if on_record is not None:
                on_record(done)
    return responses
