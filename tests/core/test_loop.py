"""The loop engine: the lr that reaches AdamW, clipping after warmup, accumulation, budgets."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

from llmbricks.core.config import load_config
from llmbricks.core.store.runs import Run
from llmbricks.core.train.distributed import Distributed
from llmbricks.core.train.loop import TrainTask, run_loop, total_steps
from llmbricks.core.train.optim import learning_rate


def task(scale: float = 1000.0, batches: int = 4) -> TrainTask:
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    data = [(torch.randn(8, 4), torch.randn(8, 1)) for _ in range(batches)]

    def loss(net: nn.Module, batch) -> torch.Tensor:
        x, y = batch
        return ((net(x) - y) ** 2).mean() * scale  # large gradients: clipping has work to do

    return TrainTask(model=model, train_batches=lambda epoch, start: iter(data[start:]),
                     batches_per_epoch=len(data), tokens_per_batch=8, loss=loss,
                     evaluate=lambda net: {"train_loss": 0.0, "val_loss": None})


def train(tmp_path, the_task: TrainTask, **train_fields) -> tuple[list[dict], list[dict]]:
    """Run the loop; return what AdamW saw at each step and the loop's events."""
    config = load_config({"train": {"loggers": [], "log_every": 1, "eval_every": 1000,
                                    **train_fields}})
    run = Run.create(tmp_path / "run", config, None, vocab_size=8)
    seen: list[dict] = []

    def before_step(optimizer, args, kwargs):
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        seen.append({"lr": optimizer.param_groups[0]["lr"],
                     "norm": torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g)
                                                                   for g in grads])).item()})

    handle = register_optimizer_step_pre_hook(before_step)
    try:
        result = run_loop(the_task, run, config, loggers=[], dist=Distributed(),
                          device=torch.device("cpu"))
    finally:
        handle.remove()
    return seen, [e for e in result.history if e["event"] == "step"]


def test_the_scheduled_lr_reaches_the_optimizer_at_every_step(tmp_path):
    seen, _ = train(tmp_path, task(), max_steps=10, warmup_steps=3, lr=0.01, min_lr=0.001)
    want = [learning_rate(s, lr=0.01, total_steps=10, warmup_steps=3, min_lr=0.001) for s in range(10)]
    assert [s["lr"] for s in seen] == pytest.approx(want)
    assert seen[2]["lr"] == pytest.approx(0.01) and seen[-1]["lr"] == pytest.approx(0.001)


def test_clipping_applies_on_the_first_step_after_warmup(tmp_path):
    seen, steps = train(tmp_path, task(), max_steps=6, warmup_steps=3, grad_clip=1.0)
    first_after_warmup = 3  # 0-based: the book's `global_step > warmup_steps` skipped it
    assert steps[first_after_warmup]["grad_norm"] > 10.0          # the raw norm was large...
    assert seen[first_after_warmup]["norm"] == pytest.approx(1.0, rel=1e-5)  # ...AdamW got 1.0
    assert all(s["norm"] <= 1.0 + 1e-5 for s in seen)


def test_no_clipping_when_grad_clip_is_null(tmp_path):
    seen, steps = train(tmp_path, task(), max_steps=2, grad_clip=None)
    assert seen[0]["norm"] > 10.0 and steps[0]["grad_norm"] is None


def test_gradient_accumulation_equals_one_big_batch(tmp_path):
    def final_weights(the_task, directory, **fields):
        train(directory, the_task, max_steps=2, warmup_steps=0, schedule="constant", **fields)
        return the_task.model.weight.detach().clone()

    small = task(scale=1.0)
    merged = task(scale=1.0, batches=4)
    pairs = [(torch.cat([a[0], b[0]]), torch.cat([a[1], b[1]]))
             for a, b in itertools.pairwise(merged.train_batches(0, 0))][::2]
    merged.train_batches = lambda epoch, start: iter(pairs[start:])
    merged.batches_per_epoch = 2
    accumulated = final_weights(small, tmp_path / "a", grad_accum=2, batch_size=8)
    whole = final_weights(merged, tmp_path / "b", grad_accum=1, batch_size=16)
    assert torch.allclose(accumulated, whole, atol=1e-6)


def test_budgets_stop_at_the_first_reached():
    config = load_config({"train": {"epochs": 2.5}}).train
    assert config.max_steps is None  # setting epochs clears the default step budget
    assert total_steps(config, batches_per_epoch=10, tokens_per_step=100, grad_accum=2) == 13
    config = load_config({"train": {"max_tokens": 1000, "max_steps": 5}}).train
    assert total_steps(config, batches_per_epoch=10, tokens_per_step=100, grad_accum=1) == 5
    config = load_config({"train": {"max_tokens": 1050}}).train
    assert total_steps(config, batches_per_epoch=10, tokens_per_step=100, grad_accum=1) == 11


def test_a_failing_step_logs_an_end_event_and_raises(tmp_path):
    class Recorder:
        def __init__(self):
            self.events, self.closed = [], False

        def log(self, event, **fields):
            self.events.append((event, fields))

        def close(self):
            self.closed = True

    the_task = task(scale=1.0)
    original = the_task.loss
    calls = []

    def flaky(net, batch):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom")
        return original(net, batch)

    the_task.loss = flaky
    config = load_config({"train": {"loggers": [], "log_every": 1, "max_steps": 5}})
    run = Run.create(tmp_path / "run", config, None, vocab_size=8)
    recorder = Recorder()
    with pytest.raises(RuntimeError, match="boom"):
        run_loop(the_task, run, config, loggers=[recorder], dist=Distributed(),
                 device=torch.device("cpu"))
    event, fields = recorder.events[-1]
    assert event == "end" and fields["status"] == "failed" and fields["step"] == 2
    assert recorder.closed
