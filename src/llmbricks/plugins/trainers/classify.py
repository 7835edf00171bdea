"""Classification finetuning (chapter 6): cross-entropy of class logits on labeled texts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn

from llmbricks.core.component import ParamsModel
from llmbricks.core.errors import ConfigError
from llmbricks.core.interfaces import Model, Tokenizer, Trainer
from llmbricks.core.tasks.classification import (
    ClassifierInfo,
    LabeledBatches,
    LabeledData,
    RowOrder,
    check_num_classes,
    pad_id,
    padded_length,
    prepare_labeled,
)
from llmbricks.core.tasks.classifier import classification_report, run_batches
from llmbricks.core.train.loop import TrainTask, move_batch
from llmbricks.core.train.session import Session
from llmbricks.core.train.splits import SplitFractions


class ClassifyParams(ParamsModel):
    balance: bool = Field(True, description="undersample every class to the smallest class's "
                          "count, seeded (the book: 747 ham + 747 spam)")
    split: SplitFractions = Field(
        (0.7, 0.1, 0.2), description="train/val/test fractions of the (balanced) rows, after a "
        "seeded shuffle; the test split is the rest when they sum to 1")
    row_order: RowOrder = Field(
        "seeded", description="the random draws of balancing and splitting: seeded = Python's "
        "random with the seed; book = numpy's RandomState(seed), as pandas' DataFrame.sample in "
        "the book's create_balanced_dataset and random_split: the book's very rows")
    padding: Literal["longest", "fixed", "none"] = Field(
        "longest", description="longest = pad every text to the longest training text (the "
        "book); fixed = pad or cut to max_length; none = no padding (train.batch_size 1)")
    max_length: int | None = Field(None, ge=1, le=1 << 24, description="fixed: the padded length; longest: "
                                   "an optional cap; never past model.context_length")

    @model_validator(mode="after")
    def _fixed_needs_length(self) -> ClassifyParams:
        if self.padding == "fixed" and self.max_length is None:
            raise ValueError("padding 'fixed' needs max_length (e.g. max_length: 128)")
        return self


def class_loss(model: nn.Module, batch: tuple[Tensor, Tensor, Tensor]) -> Tensor:
    """Mean cross-entropy of each text's class logits: ``-mean log p(y | text)``."""
    ids, lengths, labels = batch
    return F.cross_entropy(model(ids, lengths=lengths).float(), labels)


def train_head(model: Model, used: str, asked: str) -> None:
    """``auto`` with adapters trains the adapters, and the new head too when no adapter wraps it.

    A classification head starts from random weights: frozen and unadapted, it could not learn.
    """
    head = model.layout().head
    if asked == "auto" and used == "none" and not any(p.requires_grad for p in head.parameters()):
        head.requires_grad_(True)


class ClassifyTrainer(Trainer):
    """Finetunes a classification head (and the last block, by default) on labeled texts (chapter 6)."""

    name = "classify"
    Params = ClassifyParams

    def fit(self, session: Session) -> dict[str, Any]:
        config, dist, device = session.config, session.dist, session.device
        p, train_cfg = self.params, config.train
        tokenizer = self.check(session)
        source = session.registry.build("datasource", config.data.source)
        data = prepare_labeled(source, tokenizer, context=config.model.context_length,
                               balance=p.balance, fractions=p.split, seed=config.data_seed,
                               row_order=p.row_order)
        check_num_classes(data.labels, config.model.head.params.get("num_classes"))
        train_ids, train_labels = data.splits["train"]
        length = padded_length(p.padding, train_ids, p.max_length, config.model.context_length)
        pad = pad_id(tokenizer)
        if dist.is_main:
            ClassifierInfo(labels=data.labels, pad_id=pad, padding=p.padding, length=length,
                           balance=p.balance, split=list(p.split), seed=config.data_seed,
                           row_order=p.row_order,
                           splits={s: data.size(s) for s in data.splits}).save(session.run.directory)
        batches = LabeledBatches(train_ids, train_labels, train_cfg.batch_size, length, pad,
                                 shuffle=config.data.shuffle, drop_last=config.data.drop_last,
                                 seed=config.data_seed, rank=dist.rank, world_size=dist.world_size)
        # Rank 0 evaluates alone, on batches of the global size: the same numbers as one process.
        global_batch = train_cfg.batch_size * dist.world_size if length is not None else 1

        def split_batches(split: str, shuffle: bool = False) -> LabeledBatches:
            ids, labels = data.splits[split]
            return LabeledBatches(ids, labels, global_batch, length, pad, shuffle=shuffle,
                                  drop_last=False, seed=config.data_seed)

        # The book's eval_iter: the first eval_batches batches (train: a fixed shuffled order).
        fixed = {"train": split_batches("train", shuffle=True).first(train_cfg.eval_batches),
                 "val": split_batches("val").first(train_cfg.eval_batches)}
        model, used = session.build_model("last_block")
        train_head(model, used, train_cfg.trainable)
        task = TrainTask(
            model=model,
            train_batches=batches.epoch,
            batches_per_epoch=len(batches),
            tokens_per_batch=train_cfg.batch_size * batches.mean_length(),
            loss=class_loss,
            evaluate=lambda net: evaluate_on(net, fixed, device),
            finish=lambda net: final_results(net, data, split_batches, device),
            to_device=move_batch,
            perplexity=False,
        )
        return session.fit(task)

    def check(self, session: Session) -> Tokenizer:
        """Refuse what cannot train before any data is read; the run's tokenizer."""
        config, p = session.config, self.params
        head = config.model.head
        if session.registry.get("head", head.name).per_token:
            raise ConfigError(f"train.trainer: classify needs a classification head, but "
                              f"model.head is '{head.name}'; set --set model.head=classification")
        if p.padding == "none" and config.train.batch_size != 1:
            raise ConfigError(f"train.trainer.padding: none feeds one text per batch (no padding) "
                              f"but train.batch_size is {config.train.batch_size}; set "
                              "--set train.batch_size=1, or use padding longest or fixed")
        if session.tokenizer is None:
            raise ConfigError("model.tokenizer: the classify trainer needs a tokenizer; set one")
        return session.tokenizer


def evaluate_on(net: nn.Module, fixed: dict[str, list[Any]],
                device: torch.device) -> dict[str, float | None]:
    """Loss and accuracy on each split's fixed evaluation batches (``train_loss``, ``val_accuracy``...)."""
    out: dict[str, float | None] = {}
    for split, batches in fixed.items():
        loss, predicted, actual = run_batches(net, batches, device)
        out[f"{split}_loss"] = loss
        if actual:
            out[f"{split}_accuracy"] = sum(map(int.__eq__, predicted, actual)) / len(actual)
    return out


def final_results(net: nn.Module, data: LabeledData,
                  split_batches: Callable[[str], LabeledBatches],
                  device: torch.device) -> dict[str, Any]:
    """Whole-split accuracy, then the test split's P/R/F1 and confusion matrix."""
    results: dict[str, Any] = {}
    reports = {}
    for split in ("train", "val", "test"):
        if not data.size(split):
            continue
        loss, predicted, actual = run_batches(net, split_batches(split).first(), device)
        reports[split] = classification_report(predicted, actual, data.labels)
        results[f"{split}_accuracy"] = reports[split]["accuracy"]
        results[f"{split}_loss"] = loss
    if "test" in reports:
        results["test_macro_f1"] = reports["test"]["macro_f1"]
        results["test"] = {k: v for k, v in reports["test"].items() if k != "accuracy"}
    results["labels"] = data.labels
    results["examples"] = {s: data.size(s) for s in data.splits}
    return results
