"""A smoke test for a config: build the model and run one tiny forward and backward pass."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..build import build_model, summarize
from ..config import Config
from ..registry import Registry

#: Vocabulary used when ``vocab_size: auto`` is only known once a tokenizer is trained.
PLACEHOLDER_VOCAB = 256


@dataclass(frozen=True)
class SmokeResult:
    parameters: int
    logits_shape: tuple[int, ...]
    loss: float
    vocab_placeholder: bool


def smoke_test(config: Config, registry: Registry | None = None, *, batch_size: int = 2,
               seq_len: int = 16, seed: int = 0) -> SmokeResult:
    """Build the model on CPU, run a forward pass on random ids and backpropagate the loss.

    Catches shape and wiring mistakes that validation alone cannot see. With ``vocab_size: auto``
    and a tokenizer that learns its vocabulary, a placeholder vocabulary is used.
    """
    placeholder = config.model.vocab_size == "auto"
    model_cfg = config.model
    if placeholder:
        model_cfg = model_cfg.model_copy(update={"vocab_size": PLACEHOLDER_VOCAB})
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = build_model(model_cfg, registry)
    t = min(seq_len, model_cfg.context_length)
    vocab = model.dims.vocab_size
    ids = torch.randint(0, vocab, (batch_size, t + 1), generator=generator)
    logits = model(ids[:, :-1])
    if model.layout().head.per_token:  # next-token logits [B, T, V]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), ids[:, 1:].reshape(-1))
    else:  # one output per sequence [B, C] (a classifier): random labels
        labels = torch.randint(0, logits.shape[-1], (batch_size,), generator=generator)
        loss = torch.nn.functional.cross_entropy(logits, labels)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    if missing:
        raise RuntimeError(f"smoke test: parameters received no gradient: {', '.join(missing[:5])}")
    if not torch.isfinite(loss):
        raise RuntimeError(f"smoke test: loss is not finite ({loss.item()})")
    return SmokeResult(parameters=summarize(model).total, logits_shape=tuple(logits.shape),
                       loss=loss.item(), vocab_placeholder=placeholder)
