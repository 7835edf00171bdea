"""A NaN or infinite loss, gradient norm or weight: stop or skip by ``train.on_nonfinite``, never save it."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from llmbricks.core.config import load_config
from llmbricks.core.errors import LlmbricksError
from llmbricks.core.store.runs import Run, load_checkpoint, verify_checkpoint
from llmbricks.core.train.distributed import Distributed
from llmbricks.core.train.loop import MAX_SKIPS_IN_A_ROW, TrainTask, _weights_finite, run_loop


class Recorder:
    """A logger that keeps every event."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []

    def log(self, event: str, **fields) -> None:
        self.events.append((event, fields))

    def close(self) -> None:
        pass

    def named(self, name: str) -> list[dict]:
        return [fields for event, fields in self.events if event == name]


def task(bad_steps: set[int] | None = None, *, bad_from: int | None = None,
         bad_grad: bool = False) -> TrainTask:
    """A linear model whose loss (or gradient, with ``bad_grad``) is non-finite at given steps.

    With ``grad_accum=1``, the n-th call of ``loss`` is optimizer step n (1-based).
    """
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    data = [(torch.randn(8, 4), torch.randn(8, 1)) for _ in range(4)]
    calls = [0]

    def loss(net: nn.Module, batch) -> torch.Tensor:
        calls[0] += 1
        x, y = batch
        out = net(x)
        bad = calls[0] in (bad_steps or set()) or (bad_from is not None and calls[0] >= bad_from)
        if bad and bad_grad:
            out.register_hook(lambda grad: torch.full_like(grad, math.inf))  # finite loss, inf grad
        value = ((out - y) ** 2).mean()
        return value * math.nan if bad and not bad_grad else value

    return TrainTask(model=model, train_batches=lambda epoch, start: iter(data[start:]),
                     batches_per_epoch=len(data), tokens_per_batch=8, loss=loss,
                     evaluate=lambda net: {"train_loss": 0.0, "val_loss": None})


def fit(run_dir, the_task: TrainTask, resume=None, **train_fields):
    """Run the loop into ``run_dir`` (created unless resuming); return (run, recorder, result)."""
    config = load_config({"train": {"loggers": [], "log_every": 1, "eval_every": 1000,
                                    "warmup_steps": 0, "lr": 0.01, "schedule": "constant",
                                    **train_fields}})
    run = Run.open(run_dir) if resume else Run.create(run_dir, config, None, vocab_size=8)
    checkpoint = run.latest_checkpoint() if resume else None
    recorder = Recorder()
    result = run_loop(the_task, run, config, loggers=[recorder], dist=Distributed(),
                      device=torch.device("cpu"), resume=checkpoint)
    return run, recorder, result


def checkpoint_steps(run: Run) -> list[int]:
    return [step for step, _ in run.checkpoint_dirs()]


def assert_every_checkpoint_finite(run: Run) -> None:
    for _, path in run.checkpoint_dirs():
        model = nn.Linear(4, 1)
        load_checkpoint(verify_checkpoint(path), model)
        assert _weights_finite(model), path


def test_stop_names_the_step_the_cause_and_the_checkpoint_kept(tmp_path):
    with pytest.raises(LlmbricksError) as raised:
        fit(tmp_path / "run", task({5}), max_steps=10, checkpoint_every=2, keep_checkpoints=5)
    message = str(raised.value)
    run = Run.open(tmp_path / "run")
    assert message.startswith("step 5: the loss is nan (lr 0.01 may be too high; lower train.lr)")
    assert message.endswith(f"the last good checkpoint is step 4 in {run.checkpoints_dir}")
    assert "\n" not in message and type(raised.value).exit_code == 1
    assert checkpoint_steps(run) == [2, 4]  # nothing after the bad step
    assert_every_checkpoint_finite(run)


def test_stop_logs_the_nonfinite_event_and_a_failed_end(tmp_path):
    config = load_config({"train": {"loggers": [], "max_steps": 6, "warmup_steps": 0}})
    run = Run.create(tmp_path / "run", config, None, vocab_size=8)
    recorder = Recorder()
    with pytest.raises(LlmbricksError):
        run_loop(task({3}), run, config, loggers=[recorder], dist=Distributed(),
                 device=torch.device("cpu"))
    [event] = recorder.named("nonfinite")
    assert event["step"] == 3 and event["action"] == "stop" and math.isnan(event["loss"])
    assert recorder.named("end")[-1]["status"] == "failed" and recorder.named("end")[-1]["step"] == 2


def test_a_non_finite_gradient_norm_stops_too_with_or_without_clipping(tmp_path):
    for clip in (1.0, None):
        with pytest.raises(LlmbricksError, match=r"^step 2: the gradient norm is (inf|nan) ") as raised:
            fit(tmp_path / f"run-{clip}", task({2}, bad_grad=True), max_steps=4, grad_clip=clip)
        assert ("set train.grad_clip" in str(raised.value)) == (clip is None)
        assert "no checkpoint was written before it" in str(raised.value)


def test_bf16_is_named_as_a_cause_when_it_is_on(tmp_path):
    with pytest.raises(LlmbricksError) as raised:
        fit(tmp_path / "run", task({2}), max_steps=4, precision="bf16")
    assert "or bf16 overflowed; lower train.lr or set train.precision=fp32" in str(raised.value)


def test_skip_drops_the_bad_updates_warns_and_finishes(tmp_path):
    the_task = task({3, 6})
    with pytest.warns(UserWarning) as caught:
        run, recorder, result = fit(tmp_path / "run", the_task, max_steps=8, on_nonfinite="skip",
                                    checkpoint_every=2, keep_checkpoints=10)
    assert [str(w.message) for w in caught] == [
        f"step {n}: the loss is nan; skipped this update (train.on_nonfinite=skip; training stops "
        f"after {MAX_SKIPS_IN_A_ROW} in a row)"
        for n in (3, 6)]
    assert result.status == "completed" and result.state.step == 8
    assert result.state.skipped_steps == 2
    assert [e["step"] for e in recorder.named("nonfinite")] == [3, 6]
    assert all(e["action"] == "skip" for e in recorder.named("nonfinite"))
    saved = torch.load(run.latest_checkpoint().path / "optimizer.pt", weights_only=True)
    assert int(saved["optimizer"]["state"][0]["step"]) == 6  # AdamW stepped 8 - 2 times
    assert checkpoint_steps(run) == [2, 4, 6, 8]
    assert_every_checkpoint_finite(run)


def test_skip_gives_up_after_too_many_in_a_row(tmp_path):
    with pytest.warns(UserWarning), pytest.raises(LlmbricksError) as raised:
        fit(tmp_path / "run", task(bad_from=3), max_steps=30, on_nonfinite="skip",
            checkpoint_every=2, keep_checkpoints=20)
    step = 2 + MAX_SKIPS_IN_A_ROW
    assert str(raised.value).startswith(
        f"step {step}: the loss is nan: {MAX_SKIPS_IN_A_ROW} non-finite steps in a row, the most "
        "train.on_nonfinite=skip allows (lr 0.01 may be too high")
    run = Run.open(tmp_path / "run")
    assert checkpoint_steps(run)[-1] == 10  # written while skipping: the weights were still good
    assert_every_checkpoint_finite(run)


def test_a_good_step_resets_the_count_in_a_row(tmp_path):
    bad = set(range(2, 2 + MAX_SKIPS_IN_A_ROW - 1)) | set(range(12, 12 + MAX_SKIPS_IN_A_ROW - 1))
    with pytest.warns(UserWarning) as caught:
        _, _, result = fit(tmp_path / "run", task(bad), max_steps=25, on_nonfinite="skip")
    assert [str(w.message).split(":")[0] for w in caught] == ["step 2", "step 12"]  # one per streak
    assert result.status == "completed" and result.state.skipped_steps == 2 * (MAX_SKIPS_IN_A_ROW - 1)


def test_weights_that_turn_non_finite_are_never_saved(tmp_path):
    # lr 1e300 overflows the update itself: the loss and gradient were finite.
    with pytest.raises(LlmbricksError) as raised:
        fit(tmp_path / "run", task(), max_steps=4, lr=1e300, checkpoint_every=1)
    assert str(raised.value).startswith("step 1: the weights are not finite after the optimizer "
                                        "step and were not saved (lr 1e+300 may be too high")
    assert checkpoint_steps(Run.open(tmp_path / "run")) == []


def test_the_run_resumes_from_the_last_good_checkpoint(tmp_path):
    with pytest.raises(LlmbricksError):
        fit(tmp_path / "run", task({5}), max_steps=8, checkpoint_every=2, keep_checkpoints=5)
    # The cause was transient (this loss is nan once): resuming from step 4 goes on to the end.
    _, recorder, result = fit(tmp_path / "run", task(), resume=True, max_steps=8,
                              checkpoint_every=2, keep_checkpoints=5)
    assert recorder.named("resume")[0]["step"] == 4
    assert result.status == "completed" and result.state.step == 8
    assert_every_checkpoint_finite(Run.open(tmp_path / "run"))


def test_weights_finite():
    model = nn.Linear(2, 2)
    assert _weights_finite(model)
    with torch.no_grad():
        model.bias[1] = math.inf
    assert not _weights_finite(model)
    assert _weights_finite(nn.Sequential())
