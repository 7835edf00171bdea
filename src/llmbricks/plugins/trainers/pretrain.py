"""Pretraining (chapter 5): next-token cross-entropy on windows of the token cache."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llmbricks.core.component import ParamsModel
from llmbricks.core.interfaces import Model, Trainer
from llmbricks.core.store.token_cache import prepare_data
from llmbricks.core.tasks.generation import generate
from llmbricks.core.train.batches import WindowBatches
from llmbricks.core.train.loop import TrainTask, move_batch
from llmbricks.core.train.session import Session
from llmbricks.core.train.windows import check_split_windows


class PretrainParams(ParamsModel):
    pass


def next_token_loss(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
    """Mean cross-entropy of every position's next token: ``-mean log p(x_{t+1} | x_<=t)``."""
    inputs, targets = batch
    logits = model(inputs)
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())


#: Logit elements per evaluation forward pass (64 MiB of fp32), at most.
EVAL_LOGITS_BUDGET = 1 << 24
#: Tokens per evaluation forward pass: small models evaluate several batches in one pass, much
#: faster on a CPU than one pass per batch of 12, yet passes past this size are slower again
#: (the speedrun's model: the 1,742 validation windows take 1.9 s in passes of 64 windows, 4.1 s
#: in one pass, as its activations no longer stay in cache).
EVAL_TOKENS_PER_PASS = 4096


def mean_loss(model: Model, batches: list[tuple[Tensor, Tensor]], device: torch.device) -> float | None:
    """Mean of the batches' mean losses (the book's ``calc_loss_loader``); ``None`` for none.

    Windows are regrouped into passes of about ``EVAL_TOKENS_PER_PASS`` tokens and at most
    ``EVAL_LOGITS_BUDGET`` logits (never fewer than one batch); each window's loss is kept
    apart, so the result is the same as batch by batch.
    """
    if not batches:
        return None
    inputs = torch.cat([x for x, _ in batches])
    targets = torch.cat([y for _, y in batches])
    length, vocab = inputs.shape[1], model.dims.vocab_size
    chunk = max(len(batches[0][0]), min(EVAL_LOGITS_BUDGET // max(1, length * vocab),
                                         EVAL_TOKENS_PER_PASS // max(1, length)))
    per_window = []
    for start in range(0, len(inputs), chunk):
        x, y = inputs[start:start + chunk].to(device), targets[start:start + chunk].to(device)
        logits = model(x).float()
        losses = F.cross_entropy(logits.transpose(1, 2), y, reduction="none")  # [N, T]
        per_window.append(losses.mean(dim=1).cpu())
    window_losses = torch.cat(per_window)
    sizes = [len(x) for x, _ in batches]
    return float(torch.stack([part.mean() for part in window_losses.split(sizes)]).mean())


class PretrainTrainer(Trainer):
    """Next-token cross-entropy on the token cache's windows (pretraining, chapter 5)."""

    name = "pretrain"
    Params = PretrainParams

    def fit(self, session: Session) -> dict[str, Any]:
        config, dist, device = session.config, session.dist, session.device
        train_cfg, data_cfg = config.train, config.data
        with dist.main_first():  # rank 0 builds the token cache; the others reuse it
            data = prepare_data(config, session.registry, tokenizer=session.tokenizer)
        tokenizer = session.tokenizer or data.tokenizer
        train_tokens, val_tokens = data.split(data_cfg.val_fraction)
        context = config.model.context_length
        check_split_windows(len(train_tokens), len(val_tokens), context, data_cfg.val_fraction)
        windows = WindowBatches(train_tokens, context, train_cfg.batch_size, stride=data_cfg.stride,
                                sampler=data_cfg.sampler, shuffle=data_cfg.shuffle,
                                drop_last=data_cfg.drop_last, seed=config.data_seed, rank=dist.rank,
                                world_size=dist.world_size)
        # Rank 0 evaluates alone, on batches of the global size: the same numbers as one process.
        global_batch = train_cfg.batch_size * dist.world_size
        train_eval = WindowBatches(train_tokens, context, global_batch).spread(train_cfg.eval_batches)
        val_eval: list[tuple[Tensor, Tensor]] = []
        if len(val_tokens) > context:
            val_eval = WindowBatches(val_tokens, context, global_batch, drop_last=False,
                                     shuffle=False).spread(train_cfg.eval_batches)
        model, _ = session.build_model("all", tokenizer=tokenizer)

        def evaluate(net: Model) -> dict[str, float | None]:
            return {"train_loss": mean_loss(net, train_eval, device),
                    "val_loss": mean_loss(net, val_eval, device)}

        def sample(net: nn.Module) -> tuple[str, str]:
            prompt = train_cfg.sample_prompt or ""
            text = generate(net, tokenizer, prompt, max_new_tokens=train_cfg.sample_tokens)
            return prompt, text

        task = TrainTask(
            model=model,
            train_batches=windows.epoch,
            batches_per_epoch=len(windows),
            tokens_per_batch=train_cfg.batch_size * context,
            loss=next_token_loss,
            evaluate=evaluate,
            sample=sample if train_cfg.sample_prompt and tokenizer is not None else None,
            to_device=move_batch,
        )
        return session.fit(task)
