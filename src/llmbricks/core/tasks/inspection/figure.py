"""What the three pictures share: a grid of panels on an Agg canvas, token labels, the PNG.

Drawn with matplotlib's object API (``Figure`` + ``FigureCanvasAgg``), never pyplot, as
``core.train.plots`` draws: no GUI backend, no global figure state. Saved through
``save_figure_atomically``, so a reader never sees half a PNG.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import InputError
from ...train.plots import save_figure_atomically

#: Shown instead of characters a tick label would hide or break on.
VISIBLE = {" ": "\u2423", "\n": "\u21b5", "\t": "\u2192", "\r": "\u240d"}


@dataclass(frozen=True)
class Picture:
    """A PNG an ``inspect_*`` function wrote: where, how many panels, and one line about it."""

    path: Path
    panels: int
    summary: str


def count(n: int, noun: str) -> str:
    """``1 layer``, ``2 layers``: the summaries' numbers."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def png_path(path: str | Path) -> Path:
    """``path`` when it names a ``.png`` file: every picture here is a PNG, whatever its name."""
    target = Path(path)
    if target.suffix.lower() != ".png":
        raise InputError(f"{target}: the picture is written as a PNG; give a path ending in .png")
    if target.is_dir():
        raise InputError(f"{target} is a directory: give a file path ending in .png")
    return target


def token_label(text: str, width: int = 8) -> str:
    """A token as a tick label: whitespace made visible (``␣ ↵ →``), at most ``width`` chars."""
    shown = "".join(VISIBLE.get(ch, ch if ch.isprintable() else f"\\x{ord(ch):02x}")
                    for ch in text)
    if not shown:
        return "\u2205"  # a token that decodes to nothing on its own (part of a character)
    return shown if len(shown) <= width else shown[: width - 1] + "\u2026"


def new_figure(panels: int, columns: int, panel_inches: float, *, extra_width: float = 0.0
               ) -> tuple[Any, list[Any]]:
    """A figure of ``panels`` axes, ``columns`` per row, and the axes in reading order.

    Axes left over in the last row are removed, so ``len(fig.axes)`` counts the panels until a
    colour bar is added.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns = max(1, min(columns, panels))
    rows = math.ceil(panels / columns)
    fig = Figure(figsize=(columns * panel_inches + extra_width, rows * panel_inches + 0.6),
                 dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.subplots(rows, columns, squeeze=False)
    axes = [ax for row in grid for ax in row]
    for ax in axes[panels:]:
        ax.remove()
    return fig, axes[:panels]


def label_ticks(ax: Any, tokens: list[str], *, x: bool = True, y: bool = True,
                inches: float = 3.0) -> None:
    """Token strings on the axes, as many as fit (every k-th when there are too many)."""
    step = max(1, math.ceil(len(tokens) * 0.12 / max(inches, 0.5)))  # ~0.12 in per label
    ticks = list(range(0, len(tokens), step))
    labels = [tokens[i] for i in ticks]
    if x:
        ax.set_xticks(ticks, labels, rotation=90, fontsize=6, parse_math=False)
    if y:
        ax.set_yticks(ticks, labels, fontsize=6, parse_math=False)


def save_png(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` as a PNG at ``path`` (checked by ``png_path``), atomically; missing parent
    directories are made, as every atomic write here makes them."""
    return save_figure_atomically(fig, png_path(path))
