"""Loss curves from a run's events: ``runs/NAME/loss.png``, redrawn at each eval.

Drawn with matplotlib's object API on an Agg canvas, never pyplot: no GUI backend is chosen, no
global figure state is touched, so plotting is safe from a training process, a thread or a test.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..store.atomic import atomic_file


def read_events(path: str | Path) -> list[dict[str, Any]]:
    """The events of a ``metrics.jsonl``, in order.

    A run killed mid-write leaves a truncated last line: it is skipped. A bad line anywhere else
    means the file was damaged some other way, so it is an error naming the line.
    """
    path = Path(path)
    lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    events: list[dict[str, Any]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError as exc:
            if number == len(lines):
                break  # the half-written last line of a killed run
            raise DataError(f"{path}:{number}: not a JSON line ({exc.msg})") from None
        if not isinstance(event, dict):
            raise DataError(f"{path}:{number}: expected a JSON object, got {type(event).__name__}")
        events.append(event)
    return events


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _Curves:
    """The points to draw: train loss per logged step, and the eval losses.

    A resumed run continues from its checkpoint, so points a killed run logged after that step are
    dropped when the resumed run's ``start`` arrives: each step is drawn once, from the run that
    produced the final weights.
    """

    def __init__(self) -> None:
        self.series: dict[str, list[tuple[float, float]]] = {"loss": [], "train_loss": [],
                                                              "val_loss": []}
        self.tokens_per_step: int | None = None
        self.name: str | None = None

    def add(self, event: dict[str, Any]) -> None:
        kind, step = event.get("event"), event.get("step")
        if kind == "start":
            if _number(step):
                for key, points in self.series.items():
                    self.series[key] = [p for p in points if p[0] <= step]
            if _number(event.get("tokens_per_step")) and event["tokens_per_step"] > 0:
                self.tokens_per_step = event["tokens_per_step"]
            run_dir = event.get("run_dir")
            self.name = event.get("config_name") or (Path(run_dir).name if run_dir else None)
            return
        keys = {"step": ("loss",), "eval": ("train_loss", "val_loss")}.get(kind, ())
        for key in keys:
            value = event.get(key)
            if _number(step) and _number(value):
                self.series[key].append((step, value))


def plot_losses(events: Iterable[dict[str, Any]], path: str | Path,
                title: str | None = None) -> Path:
    """Draw train loss per step and eval losses on one axes into a PNG at ``path``; return it.

    The file is replaced atomically, so a reader (or a run killed mid-draw) never sees half a PNG.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import EngFormatter

    curves = _Curves()
    for event in events:
        curves.add(event)

    fig = Figure(figsize=(8, 5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    styles = {
        "loss": dict(label="train loss", color="tab:blue", alpha=0.6, linewidth=1),
        "train_loss": dict(label="eval: train loss", color="tab:green", marker="o", linewidth=2),
        "val_loss": dict(label="eval: val loss", color="tab:orange", marker="o", linewidth=2),
    }
    for key, points in curves.series.items():
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, **styles[key])
    ax.set_xlabel("step")
    ax.set_ylabel("loss (cross-entropy, nats)")
    ax.set_title(title or (f"loss: {curves.name}" if curves.name else "loss"))
    ax.grid(True, alpha=0.3)
    if any(curves.series.values()):
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no losses logged yet", ha="center", va="center",
                transform=ax.transAxes)
    if curves.tokens_per_step:
        tps = curves.tokens_per_step
        top = ax.secondary_xaxis("top", functions=(lambda s: s * tps, lambda t: t / tps))
        top.set_xlabel("tokens")
        top.xaxis.set_major_formatter(EngFormatter())
    return save_figure_atomically(fig, Path(path))


def plot_schedule(rates: list[float], path: str | Path, title: str) -> Path:
    """Draw a run's learning rate per step into a PNG at ``path`` (replaced atomically)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(range(len(rates)), rates, color="tab:blue")
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    return save_figure_atomically(fig, Path(path))


def save_figure_atomically(fig: Any, path: Path) -> Path:
    """Save ``fig`` as a PNG at ``path`` through the store's atomic writer."""
    with atomic_file(path) as fh:
        fig.savefig(fh, format="png")
    return path
