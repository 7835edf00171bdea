"""Loss plots and reading metrics.jsonl back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmbricks.core.errors import DataError
from llmbricks.core.train.plots import _Curves, plot_losses, read_events

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run_events(start_step: int = 0, last: int = 100, resumed: bool = False) -> list[dict]:
    events = [{"event": "start", "step": start_step, "time": 0.0, "run_dir": "runs/tiny",
               "max_steps": 100, "tokens_per_step": 2048, "resumed": resumed}]
    for step in range(start_step + 10, last + 1, 10):
        events.append({"event": "step", "step": step, "loss": 5.0 - step / 50, "tokens": step * 2048})
        if step % 50 == 0:
            events.append({"event": "eval", "step": step, "train_loss": 4.9 - step / 50,
                           "val_loss": 5.1 - step / 50, "val_ppl": 100.0})
    events.append({"event": "end", "step": last, "status": "completed"})
    return events


def write_jsonl(path: Path, events: list[dict]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


def assert_png(path: Path) -> None:
    import matplotlib.image

    assert path.read_bytes()[:8] == PNG_SIGNATURE
    height, width = matplotlib.image.imread(path).shape[:2]
    assert width == 800 and height == 500  # figsize 8x5 at 100 dpi


def test_plot_losses_writes_a_png(tmp_path):
    out = plot_losses(run_events(), tmp_path / "loss.png")
    assert out == tmp_path / "loss.png"
    assert_png(out)
    assert [p.name for p in tmp_path.iterdir()] == ["loss.png"]  # no temp file left behind


def test_plot_losses_replaces_an_existing_file_and_makes_folders(tmp_path):
    target = tmp_path / "run" / "loss.png"
    plot_losses(run_events(last=50), target)
    first = target.read_bytes()
    plot_losses(run_events(), target, title="custom")
    assert target.read_bytes() != first
    assert_png(target)
    assert sorted(p.name for p in target.parent.iterdir()) == ["loss.png"]


def test_plot_losses_draws_no_data_and_odd_values(tmp_path):
    assert_png(plot_losses([], tmp_path / "empty.png"))
    odd = [{"event": "step", "step": 1, "loss": None}, {"event": "eval", "step": 1,
                                                        "train_loss": 2.0, "val_loss": None},
           {"event": "checkpoint", "step": 1, "path": "x"}, {"no_event": True}]
    assert_png(plot_losses(odd, tmp_path / "odd.png"))


def test_failed_save_leaves_no_temp_file(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    def broken(self, *args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken)
    with pytest.raises(RuntimeError):
        plot_losses(run_events(), tmp_path / "loss.png")
    assert list(tmp_path.iterdir()) == []


def test_curves_of_a_resumed_run_drop_the_killed_runs_later_points():
    killed = run_events(last=80)[:-1]  # killed after step 80, last checkpoint at 50
    resumed = run_events(start_step=50, resumed=True)
    curves = _Curves()
    for event in killed + resumed:
        curves.add(event)
    steps = [s for s, _ in curves.series["loss"]]
    assert steps == sorted(set(steps)) == list(range(10, 101, 10))
    assert [s for s, _ in curves.series["val_loss"]] == [50, 100]
    assert curves.tokens_per_step == 2048 and curves.name == "tiny"


def test_read_events_round_trips(tmp_path):
    events = run_events()
    assert read_events(write_jsonl(tmp_path / "metrics.jsonl", events)) == events


def test_read_events_skips_a_truncated_last_line(tmp_path):
    path = write_jsonl(tmp_path / "metrics.jsonl", run_events())
    with path.open("a") as fh:
        fh.write('{"event": "step", "step": 11')
    assert read_events(path) == run_events()


def test_read_events_skips_blank_lines_and_trailing_newlines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"event": "start"}\n\n{"event": "end"}\n\n\n')
    assert [e["event"] for e in read_events(path)] == ["start", "end"]


def test_read_events_rejects_damage_before_the_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"event": "start"}\n{"eve\n{"event": "end"}\n')
    with pytest.raises(DataError, match=r"metrics.jsonl:2: not a JSON line"):
        read_events(path)
    path.write_text('{"event": "start"}\n[1, 2]\n{"event": "end"}\n')
    with pytest.raises(DataError, match=r"metrics.jsonl:2: expected a JSON object, got list"):
        read_events(path)


def test_plots_module_imports_no_plugin():
    import ast

    import llmbricks.core.train.plots as plots

    tree = ast.parse(Path(plots.__file__).read_text())
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not any("plugins" in name or name.startswith("matplotlib.pyplot") for name in imported)
