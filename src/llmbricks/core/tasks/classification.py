"""Classification finetuning (the book's chapter 6): labeled rows -> balanced, split, padded batches.

The pipeline, each step a function so the ``classify`` trainer, ``llmbricks eval`` and the tests
share it:

1. ``labeled_rows``: every ``(text, label)`` row of a labeled data source; ``label_names``: the
   source's declared ``labels`` (``sms_spam``: ham, spam), else the sorted distinct labels.
2. ``balance_rows``: undersample every class to the smallest class's count (the book's 747/747),
   seeded.
3. ``split_rows``: shuffle (seeded), then cut: ``train_end = int(n * f_train)``,
   ``val_end = train_end + int(n * f_val)``, the rest is test (1494 rows -> 1045/149/300).
   ``row_order`` picks the random numbers of steps 2 and 3: ``seeded`` (Python's ``random``) or
   ``book`` (numpy's ``RandomState(seed)``, what pandas' ``DataFrame.sample`` draws in the
   book's ``create_balanced_dataset`` and ``random_split``: the book's very rows).
4. ``encode_split``: token ids, truncated to the model's context.
5. ``padded_length``: ``longest`` (the longest training text), ``fixed`` N, or ``none``.
6. ``LabeledBatches``: ``(ids [B, L], lengths [B], labels [B])`` batches, right-padded with the
   tokenizer's ``<|endoftext|>`` id (0 if it has none); epochs are a pure function of
   ``(seed, epoch)``, restartable at a batch and sharded across ranks like ``WindowBatches``.

Metrics (``classification_report``) and the inference API (``classify``) live in
``core/tasks/classifier.py``.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ..errors import ConfigError, DataError, InputError
from ..interfaces import DataSource, Tokenizer
from ..store.atomic import write_atomic
from ..train.batches import ShardedEpochs
from ..train.splits import split_sizes

#: What a classification run records beside its checkpoints: label names and the padding used.
CLASSIFIER_FILE = "classifier.json"
SPLITS = ("train", "val", "test")
ENDOFTEXT = "<|endoftext|>"


# --- rows ---------------------------------------------------------------------------------------


def labeled_rows(source: DataSource) -> list[tuple[str, str]]:
    """Every ``(text, label)`` row, labels as strings (JSONL integer labels become ``"0"``...)."""
    if source.records != "labeled":
        raise ConfigError(f"data.source: '{source.name}' yields {source.records} records, not "
                          "(text, label) rows; pick a labeled source (sms_spam, labeled_text)")
    return [(text, str(label)) for text, label in source]


def label_names(source: DataSource, rows: Sequence[tuple[str, str]]) -> list[str]:
    """The source's declared ``labels`` in their order, else the distinct labels sorted.

    Integer-like labels sort as numbers (``2`` before ``10``), so class ``i`` is label ``i``.
    """
    declared = source.labels
    if declared:
        names = [str(label) for label in declared]
        for index, (_, label) in enumerate(rows, start=1):
            if label not in names:
                raise InputError(f"{source.describe()}: row {index} has label {label!r}, which is "
                                f"not one of {source.name}'s labels ({', '.join(names)})")
        return names
    found = set(label for _, label in rows)
    numeric = all(label.lstrip("-").isdigit() for label in found)
    return sorted(found, key=(lambda s: (int(s), s)) if numeric else None)


def check_num_classes(labels: Sequence[str], num_classes: int | None) -> None:
    """The head must have one output per label."""
    if num_classes is not None and num_classes != len(labels):
        shown = ", ".join(labels[:8]) + (", ..." if len(labels) > 8 else "")
        raise ConfigError(f"model.head.num_classes is {num_classes} but the data has "
                          f"{len(labels)} labels ({shown}); set "
                          f"--set model.head.num_classes={len(labels)}")


RowOrder = Literal["seeded", "book"]


def book_sample(count: int, size: int, seed: int) -> list[int]:
    """``size`` of ``range(count)`` as pandas' ``DataFrame.sample(size, random_state=seed)`` picks.

    pandas draws ``RandomState(seed).choice(count, size, replace=False)``, which is the first
    ``size`` of ``RandomState(seed).permutation(count)``; each call starts a fresh RandomState.
    """
    return np.random.RandomState(seed).permutation(count)[:size].tolist()


def balance_rows(rows: Sequence[tuple[str, str]], seed: int,
                 order: RowOrder = "seeded") -> list[tuple[str, str]]:
    """Undersample every class to the smallest class's count.

    ``seeded``: the kept rows stay in file order. ``book``: as the book's
    ``create_balanced_dataset``, the classes in order of first appearance, a larger class
    sampled (its rows in the sampled order), a class of the smallest size kept whole.
    """
    by_label: dict[str, list[int]] = {}
    for index, (_, label) in enumerate(rows):
        by_label.setdefault(label, []).append(index)
    smallest = min(len(indices) for indices in by_label.values())
    if order == "book":
        picked = [[indices[i] for i in book_sample(len(indices), smallest, seed)]
                  if len(indices) > smallest else indices for indices in by_label.values()]
        return [rows[i] for indices in picked for i in indices]
    rng = random.Random(seed)
    kept: list[int] = []
    for label in sorted(by_label):
        kept += rng.sample(by_label[label], smallest)
    return [rows[i] for i in sorted(kept)]


def split_rows(rows: Sequence[tuple[str, str]], fractions: Sequence[float], seed: int,
               row_order: RowOrder = "seeded") -> dict[str, list[tuple[str, str]]]:
    """Shuffle (seeded), then cut into train/val/test as the book does.

    ``train_end = int(n * f0)``, ``val_end = train_end + int(n * f1)``; test is the rest when the
    fractions sum to 1, else the next ``int(n * f2)`` rows. ``book`` shuffles as the book's
    ``df.sample(frac=1, random_state=seed)``.
    """
    if row_order == "book":
        order = book_sample(len(rows), len(rows), seed)
    else:
        order = list(range(len(rows)))
        random.Random(seed).shuffle(order)
    train, val, test = split_sizes(len(order), fractions)
    cuts = {"train": (0, train), "val": (train, train + val),
            "test": (train + val, train + val + test)}
    return {name: [rows[i] for i in order[a:b]] for name, (a, b) in cuts.items()}


def check_splits(splits: dict[str, list[tuple[str, str]]], labels: Sequence[str],
                 fractions: Sequence[float], total: dict[str, int]) -> None:
    """Every split with a fraction above 0 must hold rows, and an example of every class."""
    n = sum(len(rows) for rows in splits.values())
    used = [(name, fraction) for name, fraction in zip(SPLITS, fractions, strict=True)
            if fraction > 0]
    for name, fraction in used:
        if not splits[name]:
            raise InputError(f"{n} labeled rows are too few: the {name} split "
                             f"({fraction:g} of them) is empty; use more rows or change "
                             "train.trainer.split")
    for name, _ in used:
        counts = Counter(label for _, label in splits[name])
        for label in labels:
            if counts[label] == 0:
                raise InputError(f"class {label!r} has no examples in the {name} split "
                                f"({total.get(label, 0)} rows of {label!r} in all); add rows of "
                                "that class, or change train.trainer.split or the seed")


# --- tokens -------------------------------------------------------------------------------------


def pad_id(tokenizer: Tokenizer) -> int:
    """The padding id: ``<|endoftext|>`` (50256 for GPT-2, the book's choice), else 0."""
    return tokenizer.special_tokens.get(ENDOFTEXT, 0)


def encode_texts(tokenizer: Tokenizer, texts: Sequence[str], context: int) -> list[list[int]]:
    """Token ids of each text, truncated to the first ``context`` tokens (the book's cut)."""
    return [ids[:context] for ids in tokenizer.encode_batch(list(texts))]


def padded_length(policy: str, train_ids: Sequence[Sequence[int]], max_length: int | None,
                  context: int) -> int | None:
    """Length every batch is padded (or cut) to; ``None`` for ``none`` (no padding).

    ``longest``: the longest training text (at most ``max_length`` when set); ``fixed``:
    ``max_length``. Never past the model's context.
    """
    if policy == "none":
        return None
    if max_length is not None and max_length > context:
        raise ConfigError(f"train.trainer.max_length: {max_length} is longer than "
                          f"model.context_length {context}; use at most {context}")
    if policy == "fixed":
        if max_length is None:
            raise ConfigError("train.trainer.padding: fixed needs train.trainer.max_length")
        return max_length
    longest = max((len(ids) for ids in train_ids), default=1)
    return max(1, min(longest, max_length or context))


def collate(rows: Sequence[Sequence[int]], labels: Sequence[int], length: int | None,
            pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(ids [B, L], lengths [B], labels [B])``: each row cut to ``L`` then right-padded.

    ``L`` is ``length``, or the longest row when ``None``. An empty text becomes one pad token
    (length 1), so every row has a last real position.
    """
    rows = [list(r[:length]) if length is not None else list(r) for r in rows]
    rows = [r or [pad] for r in rows]
    width = length if length is not None else max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
    return (ids, torch.tensor([len(r) for r in rows], dtype=torch.long),
            torch.tensor(list(labels), dtype=torch.long))


@dataclass
class LabeledData:
    """A labeled source made ready: label names, and each split as ``(ids, class index)`` pairs."""

    labels: list[str]
    splits: dict[str, tuple[list[list[int]], list[int]]]
    rows: int            # rows in the source
    balanced_rows: int   # rows kept by balancing (= rows without it)
    counts: dict[str, int] = field(default_factory=dict)  # rows per label, after balancing

    def size(self, split: str) -> int:
        return len(self.splits[split][1])


def prepare_labeled(source: DataSource, tokenizer: Tokenizer, *, context: int, balance: bool,
                    fractions: Sequence[float], seed: int,
                    row_order: RowOrder = "seeded") -> LabeledData:
    """Rows -> labels -> (balance) -> split -> checks -> token ids, all seeded by ``seed``."""
    rows = labeled_rows(source)
    if not rows:
        raise InputError(f"{source.describe()}: no labeled rows")
    labels = label_names(source, rows)
    counts = Counter(label for _, label in rows)
    if len(counts) < 2:
        raise InputError(f"{source.describe()}: every row has the label {next(iter(counts))!r}; "
                        "a classifier needs at least two classes")
    kept = balance_rows(rows, seed, row_order) if balance else list(rows)
    kept_counts = dict(Counter(label for _, label in kept))
    splits = split_rows(kept, fractions, seed, row_order)
    check_splits(splits, labels, fractions, kept_counts)
    index = {label: i for i, label in enumerate(labels)}
    encoded = {name: (encode_texts(tokenizer, [t for t, _ in part], context),
                      [index[label] for _, label in part]) for name, part in splits.items()}
    return LabeledData(labels=labels, splits=encoded, rows=len(rows), balanced_rows=len(kept),
                       counts={label: kept_counts.get(label, 0) for label in labels})


# --- batches ------------------------------------------------------------------------------------


@dataclass
class LabeledBatches(ShardedEpochs):
    """Batches ``(ids, lengths, labels)`` of one split; an epoch is a function of ``(seed, epoch)``.

    The order is cut into global batches of ``batch_size x world_size`` examples; rank ``r`` takes
    the ``r``-th slice of each, so a resumed run or two ranks see what one process would.
    """

    ids: list[list[int]]
    labels: list[int]
    batch_size: int
    length: int | None
    pad: int

    def __post_init__(self) -> None:
        self._require_batches(f"{len(self.ids)} training examples make no batch of "
                              f"{self.batch_size * self.world_size}; use a smaller "
                              "train.batch_size or more rows" if self.ids else None)

    def size(self) -> int:
        return len(self.ids)

    def gather(self, picked: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return collate([self.ids[i] for i in picked], [self.labels[i] for i in picked],
                       self.length, self.pad)

    def first(self, count: int | None = None) -> list[tuple[torch.Tensor, ...]]:
        """The first ``count`` batches (all when ``None``) of epoch 0: fixed evaluation batches."""
        batches = self.epoch(0)
        return [b for _, b in zip(range(count if count is not None else len(self)), batches,
                                  strict=False)]

    def mean_length(self) -> int:
        """Tokens in a batch row, on average (for throughput figures)."""
        if self.length is not None:
            return self.length
        return max(1, round(sum(len(r) for r in self.ids) / max(1, len(self.ids))))


# --- what a run records -------------------------------------------------------------------------


@dataclass
class ClassifierInfo:
    """``RUN/classifier.json``: what ``classify`` and ``eval`` need beyond the weights."""

    labels: list[str]
    pad_id: int
    padding: str                 # longest | fixed | none
    length: int | None           # the padded length (None: no padding)
    balance: bool = True
    split: list[float] = field(default_factory=lambda: [0.7, 0.1, 0.2])
    seed: int = 123
    splits: dict[str, int] = field(default_factory=dict)  # examples per split
    row_order: str = "seeded"    # RowOrder; how the rows were balanced and split

    def save(self, directory: str | Path) -> None:
        write_atomic(Path(directory) / CLASSIFIER_FILE, json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> ClassifierInfo | None:
        path = Path(directory) / CLASSIFIER_FILE
        if not path.is_file():
            return None
        try:
            data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
            return cls(**known)
        except (ValueError, TypeError) as exc:
            raise DataError(f"{path} is not a valid {CLASSIFIER_FILE}: {exc}") from None
