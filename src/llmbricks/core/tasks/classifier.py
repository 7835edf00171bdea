"""A trained classifier: metrics over labeled batches, and ``classify(run, texts)``.

``classification_report`` gives accuracy, per-class and macro precision/recall/F1 and the
confusion matrix (rows: true class, columns: predicted class). ``Classifier`` loads a
classification run (or model directory) and labels texts the way it was trained: each text cut
to the model's context, then padded to the run's padded length (``RUN/classifier.json``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import resolve_config
from ..errors import CheckpointError, ConfigError, InputError
from ..interfaces import Model, Tokenizer
from ..registry import Registry, get_registry
from ..store.runs import load_run
from .classification import (
    ClassifierInfo,
    collate,
    encode_texts,
    labeled_rows,
    pad_id,
    prepare_labeled,
)

# --- metrics ------------------------------------------------------------------------------------


def classification_report(predicted: Sequence[int], actual: Sequence[int],
                          labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, per-class precision/recall/F1/support, their macro means, the confusion matrix.

    ``precision_c = TP / (TP + FP)``, ``recall_c = TP / (TP + FN)``,
    ``F1_c = 2 P R / (P + R)``; a ratio with a zero denominator is 0. Macro = the unweighted mean
    over classes. ``confusion[i][j]`` counts examples of class ``i`` predicted as ``j``.
    """
    k = len(labels)
    confusion = [[0] * k for _ in range(k)]
    for p, a in zip(predicted, actual, strict=True):
        confusion[a][p] += 1
    report: dict[str, Any] = {"accuracy": _ratio(sum(confusion[i][i] for i in range(k)),
                                                 len(actual)),
                              "labels": list(labels), "precision": {}, "recall": {}, "f1": {},
                              "support": {}}
    for i, label in enumerate(labels):
        tp = confusion[i][i]
        precision = _ratio(tp, sum(row[i] for row in confusion))
        recall = _ratio(tp, sum(confusion[i]))
        report["precision"][label] = precision
        report["recall"][label] = recall
        report["f1"][label] = _ratio(2 * precision * recall, precision + recall)
        report["support"][label] = sum(confusion[i])
    for metric in ("precision", "recall", "f1"):
        report[f"macro_{metric}"] = sum(report[metric].values()) / k if k else 0.0
    report["confusion"] = confusion
    return report


def _ratio(a: float, b: float) -> float:
    return a / b if b else 0.0


@torch.no_grad()
def run_batches(model: nn.Module, batches: Iterable[tuple[torch.Tensor, ...]],
                device: torch.device | str) -> tuple[float | None, list[int], list[int]]:
    """``(mean of the batches' mean losses, predicted classes, true classes)`` (the book's loaders)."""
    losses: list[float] = []
    predicted: list[int] = []
    actual: list[int] = []
    for ids, lengths, labels in batches:
        logits = model(ids.to(device), lengths=lengths.to(device)).float()
        labels = labels.to(device)
        losses.append(F.cross_entropy(logits, labels).item())
        predicted += logits.argmax(dim=-1).tolist()
        actual += labels.tolist()
    return (sum(losses) / len(losses) if losses else None), predicted, actual


# --- inference ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prediction:
    """One text's label, its probability, and every label's probability."""

    text: str
    label: str
    probability: float
    probabilities: dict[str, float]


class Classifier:
    """A classification model with its tokenizer and ``classifier.json``, ready to label texts."""

    def __init__(self, model: Model, tokenizer: Tokenizer, info: ClassifierInfo,
                 config: Any = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.info = info
        self.config = config  # the run's resolved Config, when loaded from disk

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def batches(self, ids: Sequence[Sequence[int]], labels: Sequence[int],
                batch_size: int) -> Iterable[tuple[torch.Tensor, ...]]:
        """Padded as in training; with no padding (``none``), one text per batch."""
        size = batch_size if self.info.length is not None else 1
        for start in range(0, len(ids), size):
            yield collate(ids[start:start + size], labels[start:start + size], self.info.length,
                          self.info.pad_id)

    @torch.no_grad()
    def classify(self, texts: Sequence[str], *, batch_size: int = 16) -> list[Prediction]:
        """The most likely label of each text, with softmax probabilities."""
        texts = list(texts)
        ids = encode_texts(self.tokenizer, texts, self.model.dims.context_length)
        out: list[Prediction] = []
        self.model.eval()
        for ids_, lengths, _ in self.batches(ids, [0] * len(ids), batch_size):
            probs = torch.softmax(self.model(ids_.to(self.device),
                                             lengths=lengths.to(self.device)).float(), dim=-1)
            for row in probs.tolist():
                best = max(range(len(row)), key=row.__getitem__)
                text = texts[len(out)]
                out.append(Prediction(text=text, label=self.info.labels[best],
                                      probability=row[best],
                                      probabilities=dict(zip(self.info.labels, row, strict=True))))
        return out


def load_classifier(path: str | Path, device: torch.device | str = "cpu",
                    registry: Registry | None = None) -> Classifier:
    """A classification run (its newest checkpoint) or model directory, ready to classify.

    Without ``classifier.json`` (a bare model directory) the labels are the class numbers and
    texts are not padded.
    """
    registry = registry or get_registry()
    config, model, tokenizer = load_run(path, device, registry)
    head = model.layout().head
    if head.per_token:
        raise ConfigError(f"{path} is not a classifier (its head is '{config.model.head.name}'); "
                          "train one with train.trainer: classify and model.head: classification")
    if tokenizer is None:
        raise CheckpointError(f"{path} holds no tokenizer/; a classifier needs the tokenizer "
                              "it was trained with")
    info = ClassifierInfo.load(path)
    if info is None:
        classes = head.num_classes or 0
        info = ClassifierInfo(labels=[str(i) for i in range(classes)], pad_id=pad_id(tokenizer),
                              padding="none", length=None)
    return Classifier(model, tokenizer, info, config)


def classify(path: str | Path, texts: Sequence[str], *, device: torch.device | str = "cpu",
             batch_size: int = 16, registry: Registry | None = None) -> list[Prediction]:
    """Label ``texts`` with the classifier in ``path`` (a run or model directory)."""
    return load_classifier(path, device, registry).classify(texts, batch_size=batch_size)


def evaluate_classifier(path: str | Path, *, data: dict[str, Any] | None = None,
                        batch_size: int = 8, max_batches: int | None = None,
                        device: torch.device | str = "cpu",
                        registry: Registry | None = None) -> dict[str, Any]:
    """Accuracy, loss, P/R/F1 and the confusion matrix of a classifier (``llmbricks eval``).

    ``data`` (a resolved data-source spec) is labeled with the run's label names: all of its rows
    are evaluated. By default: the run's own test split, rebuilt from its config and seed.
    """
    registry = registry or get_registry()
    classifier = load_classifier(path, device, registry)
    info, context = classifier.info, classifier.model.dims.context_length
    run_config = classifier.config
    if data is not None:
        raw = run_config.to_data()
        raw["data"]["source"] = data
        try:
            source_spec = resolve_config(raw, registry).data.source
        except ConfigError as exc:
            raise ConfigError(str(exc).replace("data.source", "--data", 1)) from None
        source = registry.build("datasource", source_spec)
        rows = labeled_rows(source)
        index = {label: i for i, label in enumerate(info.labels)}
        unknown = sorted({label for _, label in rows if label not in index})
        if unknown:
            raise InputError(f"{source.describe()}: label(s) {', '.join(map(repr, unknown[:5]))} "
                            f"are not among the classifier's labels ({', '.join(info.labels)})")
        ids = encode_texts(classifier.tokenizer, [t for t, _ in rows], context)
        labels, name = [index[label] for _, label in rows], source_spec.name
    else:
        source = registry.build("datasource", run_config.data.source)
        prepared = prepare_labeled(source, classifier.tokenizer, context=context,
                                   balance=info.balance, fractions=info.split, seed=info.seed,
                                   row_order=info.row_order)
        if prepared.labels != info.labels:
            raise InputError(f"{source.describe()} now has labels {prepared.labels}, not the "
                            f"run's {info.labels}")
        ids, labels = prepared.splits["test"]
        name = f"{run_config.data.source.name} (test split)"
    batches = list(classifier.batches(ids, labels, batch_size))[:max_batches]
    loss, predicted, actual = run_batches(classifier.model, batches, classifier.device)
    report = classification_report(predicted, actual, info.labels)
    return {"run": str(path), "data": name, "loss": loss, "examples": len(actual), **report}

