"""The built-in loggers: metrics.jsonl, the console and TensorBoard, fed the loop's events."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest
from rich.console import Console

from llmbricks.core.errors import ComponentError
from llmbricks.core.interfaces import Logger
from llmbricks.plugins import loggers as loggers_plugin
from llmbricks.plugins.loggers.console import ConsoleLogger
from llmbricks.plugins.loggers.jsonl import JsonlLogger
from llmbricks.plugins.loggers.tensorboard import TensorBoardLogger

T0 = 1_700_000_000.0


def start(run_dir: Path, **over) -> dict:
    fields = dict(time=T0, run_dir=str(run_dir), step=0, max_steps=2000, tokens_per_step=4096,
                  params=1_234_567, resumed=False, world_size=1, config_name="tiny")
    return {**fields, **over}


def step(n: int, **over) -> dict:
    fields = dict(time=T0 + 10 + n * 0.5, step=n, epoch=n / 1000, loss=2.1345, lr=1e-3,
                  grad_norm=0.75, tokens=n * 4096, tokens_per_s=12345.4, elapsed_s=70.0)
    return {**fields, **over}


def feed(logger: Logger, *events: tuple[str, dict]) -> None:
    for name, fields in events:
        logger.log(name, **fields)


# --- every logger -----------------------------------------------------------------------------


def test_plugin_registers_the_three_loggers(isolated_registry):
    isolated_registry.register(loggers_plugin, name="loggers")
    assert set(isolated_registry.names("logger")) == {"console", "jsonl", "tensorboard"}
    assert isolated_registry.get("logger", "jsonl") is JsonlLogger


@pytest.mark.parametrize("cls", [ConsoleLogger, JsonlLogger, TensorBoardLogger])
def test_builds_with_default_params_and_has_a_summary(cls, tmp_path):
    logger = cls(cls.Params())
    assert isinstance(logger, Logger) and logger.kind == "logger"
    assert cls.summary() and "\n" not in cls.summary()
    with pytest.raises(ValueError):
        cls.Params(no_such_param=1)
    logger.log("some_future_event", step=1, whatever={"x": 1})  # before start: ignored
    logger.close()
    logger.close()  # idempotent


@pytest.mark.parametrize("cls", [ConsoleLogger, JsonlLogger, TensorBoardLogger])
def test_ignores_unknown_events_and_extra_fields(cls, tmp_path, capsys):
    logger = cls(cls.Params())
    feed(logger, ("start", start(tmp_path, future_field=3)), ("future_event", {"time": T0, "x": 1}),
         ("step", step(10, future_field="y")), ("end", dict(time=T0 + 20, step=10,
                                                           status="completed", elapsed_s=20.0,
                                                           tokens=40960, train_loss=None,
                                                           val_loss=None)))
    logger.close()


# --- jsonl ------------------------------------------------------------------------------------


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_jsonl_writes_one_object_per_event_with_event_first(tmp_path):
    logger = JsonlLogger(JsonlLogger.Params())
    events = [
        ("start", start(tmp_path)),
        ("step", step(10)),
        ("eval", dict(time=T0 + 20, step=10, train_loss=2.0, val_loss=None, val_ppl=None,
                      tokens=40960, elapsed_s=20.0)),
        ("sample", dict(time=T0 + 21, step=10, prompt="Hi\n", text='"quoted" — ünïcode')),
        ("checkpoint", dict(time=T0 + 22, step=10, path=str(tmp_path / "checkpoints/step-10"))),
        ("end", dict(time=T0 + 23, step=10, status="completed", elapsed_s=23.0, tokens=40960,
                     train_loss=2.0, val_loss=None)),
    ]
    feed(logger, *events)
    logger.close()
    raw = (tmp_path / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(raw) == len(events)
    for line, (name, fields) in zip(raw, events, strict=True):
        record = json.loads(line)
        assert list(record)[:3] == ["event", "step", "time"]
        assert record == {"event": name, **fields}  # every value round-trips
    assert logger.path == tmp_path / "metrics.jsonl"


def test_jsonl_writes_non_finite_floats_as_null(tmp_path):
    logger = JsonlLogger(JsonlLogger.Params())
    feed(logger, ("start", start(tmp_path)),
         ("step", step(1, loss=math.nan, grad_norm=math.inf, lr=-math.inf)))
    logger.close()
    text = (tmp_path / "metrics.jsonl").read_text()
    assert "NaN" not in text and "Infinity" not in text
    record = json.loads(text.splitlines()[1], parse_constant=lambda c: pytest.fail(c))
    assert record["loss"] is None and record["grad_norm"] is None and record["lr"] is None


def test_jsonl_line_is_on_disk_before_close(tmp_path):
    logger = JsonlLogger(JsonlLogger.Params())
    feed(logger, ("start", start(tmp_path)), ("step", step(5)))
    assert [r["event"] for r in read_lines(tmp_path / "metrics.jsonl")] == ["start", "step"]
    logger.close()


def test_jsonl_appends_on_a_resumed_start(tmp_path):
    first = JsonlLogger(JsonlLogger.Params())
    feed(first, ("start", start(tmp_path)), ("step", step(5)))
    first.close()
    second = JsonlLogger(JsonlLogger.Params())
    feed(second, ("start", start(tmp_path, step=5, resumed=True)), ("resume", {"time": T0, "step": 5}))
    second.close()
    assert [r["event"] for r in read_lines(tmp_path / "metrics.jsonl")] == [
        "start", "step", "start", "resume"]


def test_jsonl_starts_a_new_line_after_a_killed_runs_half_line(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"event": "start", "step": 0}\n{"event": "st')
    logger = JsonlLogger(JsonlLogger.Params())
    feed(logger, ("start", start(tmp_path, step=0)))
    logger.close()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert lines[1] == '{"event": "st'
    assert json.loads(lines[2])["event"] == "start"


def test_jsonl_file_param_and_odd_values(tmp_path):
    logger = JsonlLogger(JsonlLogger.Params(file="logs/events.jsonl"))
    feed(logger, ("start", start(tmp_path)),
         ("custom", {"time": T0, "path": tmp_path, "nested": {"a": [1.5, math.nan]}, "obj": object}))
    logger.close()
    record = read_lines(tmp_path / "logs" / "events.jsonl")[1]
    assert record["path"] == str(tmp_path)
    assert record["nested"] == {"a": [1.5, None]}
    assert isinstance(record["obj"], str)


# --- console ----------------------------------------------------------------------------------


def plain() -> ConsoleLogger:
    return ConsoleLogger(ConsoleLogger.Params(mode="plain"))


def test_console_plain_lines(tmp_path, capsys):
    logger = plain()
    feed(logger,
         ("start", start(tmp_path)),
         ("step", step(200, time=T0 + 70.0, elapsed_s=70.0)),
         ("step", step(400, time=T0 + 140.0, elapsed_s=140.0)),
         ("eval", dict(time=T0 + 141, step=400, train_loss=2.1034, val_loss=2.1512,
                       val_ppl=8.597, tokens=400 * 4096, elapsed_s=141.0)),
         ("checkpoint", dict(time=T0 + 142, step=400, path="runs/x/checkpoints/step-400")),
         ("sample", dict(time=T0 + 143, step=400, prompt="To be", text=", or not\nto be")),
         ("end", dict(time=T0 + 150, step=400, status="interrupted", elapsed_s=150.0,
                      tokens=400 * 4096, train_loss=2.1034, val_loss=2.1512)))
    logger.close()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("start 2000 steps | 1.23M params | 4,096 tokens/step")
    # 200 steps in the first 70 s from start, then 200 more in 70 s: 1600 left at 200/70 per s
    assert lines[1] == ("step  200/2000 | loss 2.1345 | lr 1.00e-03 | 12,345 tok/s | "
                        "0:01:10 elapsed, eta 0:10:30")
    assert lines[2].endswith("0:02:20 elapsed, eta 0:09:20")
    assert lines[3] == "eval step 400 | train 2.1034 | val 2.1512 | ppl 8.60"
    assert lines[4] == "checkpoint step 400 -> runs/x/checkpoints/step-400"
    assert lines[5] == "sample step 400: To be, or not\\nto be"
    assert lines[6] == ("end step 400 | interrupted | 0:02:30 elapsed | 1.64M tokens | "
                        "train 2.1034 | val 2.1512")
    assert len(lines) == 7


def test_console_eta_of_a_resumed_run_counts_from_its_start_step(tmp_path, capsys):
    logger = plain()
    feed(logger, ("start", start(tmp_path, step=1000, resumed=True)),
         ("step", step(1100, time=T0 + 100.0)))
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("resume at step 1000/2000")
    assert out[1].endswith("eta 0:15:00")  # 900 steps left at 1 step/s


def test_console_survives_missing_and_none_fields(capsys):
    logger = plain()
    feed(logger,
         ("step", {"step": 3, "loss": None, "lr": None, "grad_norm": None, "tokens_per_s": None}),
         ("eval", {"step": 3, "train_loss": 2.5, "val_loss": None, "val_ppl": None}),
         ("sample", {"step": 3, "prompt": None, "text": None}),
         ("checkpoint", {"step": 3}),
         ("end", {"step": 3, "status": "failed", "elapsed_s": None, "tokens": None,
                  "train_loss": None, "val_loss": None}))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "step 3 | - elapsed, eta -"
    assert lines[1] == "eval step 3 | train 2.5000"
    assert lines[2] == "sample step 3: "
    assert lines[4] == "end step 3 | failed | - elapsed"


def test_console_shows_nan_loss_and_truncates_samples(tmp_path, capsys):
    logger = ConsoleLogger(ConsoleLogger.Params(mode="plain", sample_chars=20))
    feed(logger, ("start", start(tmp_path)), ("step", step(1, loss=math.nan)),
         ("sample", dict(step=1, prompt="p" * 5, text="x" * 100)))
    lines = capsys.readouterr().out.splitlines()
    assert "loss nan" in lines[1]
    assert lines[2] == "sample step 1: " + "p" * 5 + "x" * 12 + "..."


def test_console_auto_mode_is_plain_when_stdout_is_not_a_terminal(tmp_path, capsys):
    logger = ConsoleLogger(ConsoleLogger.Params())
    feed(logger, ("start", start(tmp_path)), ("step", step(10)))
    logger.close()
    out = capsys.readouterr().out
    assert "step   10/2000 | loss 2.1345" in out and "\x1b[" not in out


def test_console_bar_on_a_terminal(tmp_path):
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=140, color_system=None)
    logger = ConsoleLogger(ConsoleLogger.Params(mode="auto"), console=console)
    feed(logger, ("start", start(tmp_path)), ("step", step(500)),
         ("eval", dict(step=500, train_loss=2.0, val_loss=2.2, val_ppl=9.03)),
         ("sample", dict(step=500, prompt="[bold]", text="not markup")))
    snapshot = buffer.getvalue()
    assert "500/2000" in snapshot and "loss 2.1345" in snapshot and "12,345 tok/s" in snapshot
    assert "eval step 500 | train 2.0000 | val 2.2000 | ppl 9.03" in snapshot
    assert "[bold]not markup" in snapshot
    feed(logger, ("end", dict(step=2000, status="completed", elapsed_s=60.0, tokens=1,
                              train_loss=1.0, val_loss=None)))
    logger.close()
    assert "2000/2000" in buffer.getvalue()
    assert "end step 2000 | completed | 0:01:00 elapsed" in buffer.getvalue()


def test_console_close_without_end_stops_the_bar(tmp_path):
    console = Console(file=io.StringIO(), force_terminal=True, width=100)
    logger = ConsoleLogger(ConsoleLogger.Params(mode="bar"), console=console)
    feed(logger, ("start", start(tmp_path, max_steps=None)), ("step", step(3)))
    assert console.is_terminal and logger._progress is not None
    logger.close()
    assert logger._progress is None


# --- tensorboard ------------------------------------------------------------------------------


def load_scalars(directory: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(directory))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_scalars_read_back(tmp_path):
    logger = TensorBoardLogger(TensorBoardLogger.Params())
    feed(logger, ("start", start(tmp_path)),
         ("step", step(10, loss=3.5, lr=1e-3, grad_norm=None, tokens_per_s=1000.0)),
         ("step", step(20, loss=3.0, lr=5e-4, grad_norm=0.5, tokens_per_s=2000.0)),
         ("eval", dict(time=T0 + 30, step=20, train_loss=2.9, val_loss=3.1, val_ppl=22.2,
                       tokens=1, elapsed_s=30.0)),
         ("sample", dict(time=T0 + 31, step=20, prompt="Hi", text=" there\nfriend")),
         ("end", dict(time=T0 + 32, step=20, status="completed", elapsed_s=32.0, tokens=1,
                      train_loss=2.9, val_loss=3.1)))
    logger.close()
    scalars = load_scalars(tmp_path / "tensorboard")
    assert scalars["train/loss"] == [(10, 3.5), (20, 3.0)]
    assert scalars["train/lr"] == [(10, pytest.approx(1e-3)), (20, pytest.approx(5e-4))]
    assert scalars["train/grad_norm"] == [(20, 0.5)]  # None is not a point
    assert scalars["train/tokens_per_s"] == [(10, 1000.0), (20, 2000.0)]
    assert scalars["eval/train_loss"] == [(20, pytest.approx(2.9))]
    assert scalars["eval/val_loss"] == [(20, pytest.approx(3.1))]
    assert scalars["eval/val_ppl"] == [(20, pytest.approx(22.2))]


def test_tensorboard_writes_samples_as_text(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = TensorBoardLogger(TensorBoardLogger.Params(dir="tb"))
    feed(logger, ("start", start(tmp_path)), ("sample", dict(step=7, prompt="Hi", text=" there")))
    logger.close()
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    tensors = acc.Tensors("samples/text_summary")
    assert tensors[0].step == 7
    assert b"Hi there" in tensors[0].tensor_proto.string_val[0]


def test_tensorboard_missing_package_is_a_one_line_component_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import now fails
    with pytest.raises(ComponentError) as info:
        TensorBoardLogger(TensorBoardLogger.Params())
    assert str(info.value) == ("logger 'tensorboard' needs the tensorboard package: "
                               "pip install 'llmbricks[tensorboard]'")


def test_tensorboard_resumed_run_hides_points_after_its_checkpoint(tmp_path):
    first = TensorBoardLogger(TensorBoardLogger.Params())
    feed(first, ("start", start(tmp_path)), *[("step", step(n, loss=float(n))) for n in (10, 20, 30)])
    first.close()
    second = TensorBoardLogger(TensorBoardLogger.Params())
    feed(second, ("start", start(tmp_path, step=20, resumed=True, time=T0 + 100)),
         ("step", step(30, loss=-30.0, time=T0 + 110)))
    second.close()
    assert load_scalars(tmp_path / "tensorboard")["train/loss"] == [(10, 10.0), (20, 20.0),
                                                                    (30, -30.0)]


def test_the_results_line_puts_accuracies_first_and_losses_as_eval_lines_do():
    from llmbricks.plugins.loggers.console import results_line

    line = results_line({"step": 650, "time": 1.0, "test_loss": 0.0008963, "test_accuracy": 0.96,
                         "test_macro_f1": 0.96, "labels": ["ham", "spam"], "responses": "r.json"})
    assert line == ("results | test acc 96.0% | test loss 0.0009 | test macro f1 0.96 | "
                    "responses r.json")
