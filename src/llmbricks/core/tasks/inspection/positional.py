"""What each positional encoding does, side by side: ``llmbricks inspect positional``.

Every kind is built through the registry at a config's dims and asked, through the interface
alone, what it contributes over the first ``T`` positions:

- ``embed`` (absolute kinds): ``embed(0, p)``, the vector added to the token at position ``p``,
  a ``[position, dim]`` table (sinusoidal's ``sin/cos(p w_i)``, absolute's learned rows);
- ``rotation_angles`` (rotary kinds): ``p w_j mod 2 pi``, the angle each pair of a head's dims
  turns by, ``[position, pair]``;
- ``bias`` (relative kinds): ``b[h, i, j]`` added to the score of query ``i`` on key ``j``, for
  head 0 (ALiBi's ``-m_0 (i - j)``, T5's learned bucket values), future keys left blank;
- none of them overridden: no positional signal (the causal mask alone orders the tokens).

A learned kind is drawn from a run's trained weights when it is the run's own kind, else from a
fresh initialization (seeded by the config's seed); each panel's title says which.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...errors import InputError, LlmbricksError, did_you_mean
from ...interfaces import PositionalEncoding
from ...registry import Registry, get_registry
from .figure import Picture, new_figure, png_path, save_png

#: Positions drawn by default (at most the context length).
DEFAULT_POSITIONS = 128
FAMILIES = ("added", "rotation", "bias", "nothing", "unknown")


@dataclass
class PositionalView:
    """One panel: a kind's picture (``matrix``, ``None`` when it has none) and how to read it."""

    kind: str
    title: str
    matrix: np.ndarray | None = None
    xlabel: str = ""
    ylabel: str = ""
    colour: str = ""         # the colour bar's label
    cmap: str = "viridis"
    limits: tuple[float, float] | None = None
    note: str = ""           # shown in an empty panel
    family: str = "unknown"  # how it acts: added, rotation, bias, nothing (the panels' order)


def _overrides(component: PositionalEncoding, method: str) -> bool:
    return getattr(type(component), method) is not getattr(PositionalEncoding, method)


def describe_positional(component: PositionalEncoding, positions: int, *, weights: str = ""
                        ) -> PositionalView:
    """What ``component`` contributes over positions ``0 .. positions - 1``, as one panel.

    ``weights`` is appended to the title of a kind with learned parameters ("trained",
    "random init").
    """
    name = component.name
    learned = f" ({weights})" if weights and any(True for _ in component.parameters()) else ""
    p = torch.arange(positions)
    with torch.no_grad():
        if _overrides(component, "embed"):
            dim = component.dims.emb_dim
            added = component.embed(torch.zeros(1, positions, dim), p)[0].float().numpy()
            top = float(np.abs(added).max()) or 1.0
            return PositionalView(name, f"{name}{learned}: added to each token", added,
                                  "embedding dimension", "position", "value added",
                                  "RdBu_r", (-top, top), family="added")
        angles = component.rotation_angles(p)
        if angles is not None:
            turned = torch.remainder(angles.float(), 2 * math.pi).numpy()
            return PositionalView(name, f"{name}{learned}: rotation angle p·w mod 2π", turned,
                                  "frequency pair j (fast to slow)", "position",
                                  "angle (radians)", "twilight", (0.0, 2 * math.pi),
                                  family="rotation")
        bias = component.bias(p, p) if _overrides(component, "bias") else None
        if bias is not None:
            head = bias[0].float().numpy().copy()
            head[np.triu_indices(positions, 1)] = np.nan  # future keys: hidden by the mask
            heads = component.dims.n_heads
            return PositionalView(name, f"{name}{learned}: score bias, head 0 of {heads}", head,
                                  "key position", "query position", "bias added to the score",
                                  family="bias")
    if not any(_overrides(component, m) for m in ("embed", "rotate", "bias", "context")):
        return PositionalView(name, name, note="no positional signal:\nthe causal mask alone\n"
                                               "orders the tokens", family="nothing")
    return PositionalView(name, name, note="no picture: this kind does not\ndescribe itself "
                                           "(embed, rotation_angles\nor bias)")


def _built(registry: Registry, spec: Any, dims: Any, seed: int) -> PositionalEncoding:
    """One positional component, its random initialization seeded, the global RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        component = registry.build("positional", spec, dims=dims)
    cls = type(component)
    cls.check(component.params, dims)  # what config resolution would refuse at these dims
    return component.eval()


def position_count(config: Any, positions: int | None) -> int:
    """How many positions to draw: ``positions``, else ``DEFAULT_POSITIONS``, within the context."""
    limit = config.model.context_length
    count = min(limit, DEFAULT_POSITIONS) if positions is None else positions
    if not 1 <= count <= limit:
        raise InputError(f"positions {count}: give 1 to the context length, {limit}")
    return count


def positional_views(config: Any, *, kinds: Sequence[str] | None = None,
                     positions: int | None = None, trained: PositionalEncoding | None = None,
                     registry: Registry | None = None) -> list[PositionalView]:
    """One panel per positional kind (every registered one by default), at ``config``'s dims.

    The config's own kind keeps its params and is marked in its title; ``trained`` (a run's own
    positional module) replaces its fresh build.
    """
    registry = registry or get_registry()
    known = registry.names("positional")
    chosen = list(dict.fromkeys(kinds)) if kinds else known
    for kind in chosen:
        if kind not in known:
            raise InputError(f"unknown positional kind '{kind}'{did_you_mean(kind, known)} "
                             f"(known: {', '.join(known)}; llmbricks components positional)")
    count = position_count(config, positions)
    own = config.model.positional
    # Positions do not depend on the vocabulary: a tokenizer not yet trained does not matter.
    dims = config.model.dims(1 if config.model.vocab_size == "auto" else None)
    views = []
    for kind in chosen:
        mine = own is not None and own.name == kind
        try:
            if mine and trained is not None:
                component, weights = trained, "trained"
            else:
                component = _built(registry, own if mine else kind, dims, config.seed)
                weights = "random init"
            view = describe_positional(component, count, weights=weights)
        except (LlmbricksError, ValueError) as exc:
            view = PositionalView(kind, kind, note=f"cannot be built at these dims:\n{exc}")
        if mine:
            view.title = f"{view.title} (this config's)"
        views.append(view)
    if not kinds:  # every kind: grouped by how each acts, as the module docstring lists them
        views.sort(key=lambda v: FAMILIES.index(v.family))
    if kinds and all(v.family == "unknown" for v in views):  # none of them has a picture
        raise InputError(f"nothing to draw for {', '.join(chosen)}: "
                         + "; ".join(" ".join(v.note.split()) for v in views))
    return views


def plot_positional(views: Sequence[PositionalView], title: str) -> Any:
    """A figure with one panel per view (three to a row), each with its own colour bar."""
    fig, axes = new_figure(len(views), 3, 3.3)
    for ax, view in zip(axes, views, strict=True):
        ax.set_title("\n".join(textwrap.wrap(view.title, 44)), fontsize=8)  # fits the panel
        if view.matrix is None:
            ax.set_axis_off()
            ax.text(0.5, 0.5, view.note, ha="center", va="center", fontsize=8,
                    transform=ax.transAxes, wrap=True)
            continue
        low, high = view.limits if view.limits else (None, None)
        image = ax.imshow(view.matrix, cmap=view.cmap, vmin=low, vmax=high, aspect="auto",
                          interpolation="nearest")
        ax.set_xlabel(view.xlabel, fontsize=8)
        ax.set_ylabel(view.ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
        fig.colorbar(image, ax=ax, shrink=0.85).set_label(view.colour, fontsize=7)
    fig.suptitle(title)
    return fig


def inspect_positional(source: str | Path, out: str | Path = "positional.png", *,
                       kinds: Sequence[str] | None = None, positions: int | None = None,
                       registry: Registry | None = None) -> Picture:
    """Draw every positional kind (or ``kinds``) at SOURCE's dims into the PNG ``out``.

    SOURCE is a config file, or a run or model directory: then its config, and its trained
    positional weights for its own kind.
    """
    from ...config import load_config

    png_path(out)
    trained = None
    if Path(source).is_dir():
        from ...store.runs import load_run

        config, model, _ = load_run(source, registry=registry)
        own = config.model.positional
        trained = next((m for m in model.modules() if isinstance(m, PositionalEncoding)
                        and own is not None and m.name == own.name), None)
    else:
        config = load_config(source, registry=registry)
    views = positional_views(config, kinds=kinds, positions=positions, trained=trained,
                             registry=registry)
    count = position_count(config, positions)
    m = config.model
    name = config.name or Path(source).stem
    fig = plot_positional(views, f"positional encodings at {name}'s dims: {count} positions, "
                                 f"emb_dim {m.emb_dim}, {m.n_heads} heads")
    path = save_png(fig, out)
    drawn = sum(v.matrix is not None for v in views)
    return Picture(path, len(views), f"{len(views)} kinds ({drawn} drawn), {count} positions")
