"""The dry run's numbers: each variant's parameter count, and its time from a few timed steps.

A step is timed on random token ids of the config's batch shape (forward, backward, AdamW), with
the threads one run gets (``cores // jobs``). The estimate covers training steps only:
evaluations, checkpoints and data preparation come on top.

Each variant also gets the training-memory estimate ``llmbricks train`` checks
(``core.train.memory``); a variant that would not fit beside the others running at the same time
(``jobs`` of them share the machine's memory) is flagged and not timed, so the dry run itself
never allocates what does not fit.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import dataclass
from typing import Any

import torch

from ..build import build_model, summarize
from ..config import Config
from ..registry import Registry, get_registry
from ..store.token_cache import ready_tokenizer
from ..train.memory import MemoryEstimate, available_memory, estimate_memory
from ..train.optim import build_optimizer


@dataclass(frozen=True)
class VariantEstimate:
    params: int
    step_s: float | None       # seconds per optimizer step, None when not timed
    steps: int | None          # optimizer steps of one run, None when the budget needs the data
    memory: MemoryEstimate | None = None   # the training-memory estimate of one run
    fits: bool | None = None               # None when the machine's memory cannot be told

    @property
    def run_s(self) -> float | None:
        return None if self.step_s is None or self.steps is None else self.step_s * self.steps


def planned_steps(config: Config) -> int | None:
    """Steps of one run when the budget says it without reading data (max_steps, max_tokens)."""
    train = config.train
    budgets = []
    if train.max_steps is not None:
        budgets.append(train.max_steps)
    if train.max_tokens is not None:
        budgets.append(math.ceil(train.max_tokens / tokens_per_step(config)))
    if train.epochs is not None and not budgets:
        return None  # epochs alone: the step count depends on the data's size
    return min(budgets) if budgets else None


def tokens_per_step(config: Config) -> int:
    """Tokens of one optimizer step: batch_size x grad_accum x context_length."""
    return config.train.batch_size * config.train.grad_accum * config.model.context_length


def variant_vocab(config: Config, registry: Registry) -> Any:
    """``model.vocab_size``, with ``auto`` made a number: a tokenizer that learns its vocabulary
    is readied (trained once and cached, as the run itself would)."""
    vocab = config.model.vocab_size
    if vocab == "auto" and config.model.tokenizer is not None:
        vocab = ready_tokenizer(config, registry)[0].vocab_size
    return vocab


def estimate_variant(config: Config, registry: Registry, *, threads: int, timed_steps: int = 3,
                     time_it: bool = True, warmup_steps: int = 2,
                     memory_room: int | None = None) -> VariantEstimate:
    """Count the parameters on the meta device; time ``timed_steps`` steps after the warmup.

    The median step is the estimate: a step that the machine's other work slowed down (or the
    process's first use of a kernel) does not skew it.

    With ``vocab_size: auto`` the tokenizer is readied (trained once and cached, as the run
    itself would), so the count is exact. ``memory_room`` is the memory one run may use; a
    variant whose estimate exceeds it is flagged (``fits`` False) and not timed.
    """
    vocab = variant_vocab(config, registry)
    model_config = config.model.model_copy(update={"vocab_size": vocab})
    params = summarize(build_model(model_config, registry, device="meta")).total
    memory = estimate_memory(config, registry, vocab_size=int(vocab))
    fits = None if memory_room is None else memory.total <= memory_room
    if not time_it or fits is False:
        return VariantEstimate(params, None, planned_steps(config), memory, fits)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(config.seed)
        model = build_model(model_config, registry)
        model.train()
        per_token = model.layout().head.per_token
        optimizer = build_optimizer(model, config.train, registry)
        shape = (config.train.batch_size, config.model.context_length + 1)
        ids = torch.randint(0, vocab, shape)
        times = []
        for i in range(warmup_steps + timed_steps):
            start = time.perf_counter()
            for _ in range(config.train.grad_accum):
                out = model(ids[:, :-1])
                if per_token:  # next-token logits
                    loss = torch.nn.functional.cross_entropy(out.flatten(0, 1), ids[:, 1:].flatten())
                else:  # a classifier: one output per sequence
                    loss = out.float().logsumexp(-1).mean()
                loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if i >= warmup_steps:  # the first steps warm up allocators and kernels
                times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)
    return VariantEstimate(params, statistics.median(times), planned_steps(config), memory, fits)


def threads_per_run(jobs: int) -> int:
    """Torch threads each of ``jobs`` concurrent runs gets: the cores shared out, at least 1."""
    return max(1, (os.cpu_count() or 1) // jobs)


@dataclass(frozen=True)
class PlanEstimate:
    variants: list[VariantEstimate]   # in plan order
    threads: int                      # per run
    total_s: float                    # training time of the whole ablation, ``jobs`` at a time
    unknown: bool                     # some variant's budget is in epochs: not in ``total_s``
    memory_room: int | None = None    # memory one run may use (available / jobs), if known

    @property
    def too_big(self) -> list[int]:
        """Indexes of the variants whose training would not fit in ``memory_room``."""
        return [i for i, guess in enumerate(self.variants) if guess.fits is False]


def estimate_plan(plan: Any, jobs: int, registry: Registry | None = None) -> PlanEstimate:
    """The dry run: every variant counted, its memory estimated and (when it fits) timed with the
    threads one of ``jobs`` runs gets."""
    registry = registry or get_registry()
    threads = threads_per_run(jobs)
    available = available_memory("cpu")
    room = None if available is None else available // jobs
    guesses = [estimate_variant(v.config, registry, threads=threads, memory_room=room)
               for v in plan.variants]
    known = [g.run_s for g in guesses if g.run_s is not None]
    total = sum(known) * len(plan.seeds) / jobs
    timed = [g for g in guesses if g.fits is not False]
    return PlanEstimate(guesses, threads, total, unknown=len(known) < len(timed), memory_room=room)
