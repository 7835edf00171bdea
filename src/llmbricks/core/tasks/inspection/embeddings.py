"""Token embeddings projected to 2-D: ``llmbricks inspect embeddings``.

PCA by hand with numpy: centre the ``[V, D]`` table (``X = E - mean``), take its SVD
``X = U S V^T``; the first two right singular vectors are the directions of most variance, the
points are ``X V_2`` and each direction explains ``s_k^2 / sum(s^2)`` of the variance. Every
token is a faint dot; the most frequent ones are labelled, counted in the run's own training
data when it is on this machine (never downloaded for a picture), or in a text file given.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InputError, LlmbricksError
from ...interfaces import Model, Tokenizer
from .figure import Picture, new_figure, png_path, save_png, token_label

#: At most this many dots are drawn (a seeded sample of a larger vocabulary).
MAX_POINTS = 20000
DEFAULT_TOP = 40


def pca_2d(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(points [N, 2], explained [2])``: ``matrix``'s rows on its two principal directions and
    the fraction of the total variance each one explains."""
    x = np.asarray(matrix, dtype=np.float64)
    x = x - x.mean(axis=0)                                  # X = E - mean(E)
    _, s, vt = np.linalg.svd(x, full_matrices=False)        # X = U S V^T
    variance = s ** 2
    total = variance.sum() or 1.0
    explained = np.zeros(2)
    explained[: min(2, len(s))] = variance[:2] / total      # s_k^2 / sum(s^2)
    points = np.zeros((len(x), 2))
    points[:, : min(2, vt.shape[0])] = x @ vt[:2].T         # X V_2
    return points, explained


def embedding_table(model: Model) -> np.ndarray:
    """The ``[vocab, D]`` token embedding table the model's layout declares, as float32."""
    return model.layout().embedding.weight.detach().float().cpu().numpy()


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """Named corpora resolve from disk only: a picture never starts a download."""
    from ...store.datafiles import OFFLINE_ENV

    saved = os.environ.get(OFFLINE_ENV)
    os.environ[OFFLINE_ENV] = "1"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(OFFLINE_ENV, None)
        else:
            os.environ[OFFLINE_ENV] = saved


def token_counts(config: Any, tokenizer: Tokenizer, text: str | Path | None = None
                 ) -> tuple[np.ndarray | None, str]:
    """``(counts [vocab], where from)``: each id's count in ``text`` (a file), else in the
    config's ``data.source`` through its token cache, or ``(None, why not)``."""
    from ...store.text_input import read_text

    if text is not None:
        ids = tokenizer.encode(read_text(text), allowed_special="all")
        return np.bincount(np.asarray(ids, dtype=np.int64), minlength=tokenizer.vocab_size), \
            f"counted in {Path(text).name}"
    from ...store.token_cache import prepare_data

    try:
        with _offline():
            tokens = prepare_data(config, tokenizer=tokenizer).cache.tokens
    except LlmbricksError as exc:
        return None, f"the training data is not readable here ({exc})"
    counts = np.bincount(np.asarray(tokens, dtype=np.int64), minlength=tokenizer.vocab_size)
    return counts, f"counted in the training data, {config.data.source.name}"


def plot_embeddings(table: np.ndarray, labels: dict[int, str], title: str,
                    *, seed: int = 0) -> Any:
    """One panel: every row of ``table`` on its two principal components, ``labels`` written
    beside their tokens' dots. Returns the matplotlib ``Figure``."""
    points, explained = pca_2d(table)
    fig, (ax,) = new_figure(1, 1, 8.0)
    shown = np.arange(len(points))
    if len(shown) > MAX_POINTS:
        shown = np.random.default_rng(seed).choice(shown, MAX_POINTS, replace=False)
    small = len(shown) <= 1000
    ax.scatter(points[shown, 0], points[shown, 1], s=10 if small else 3,
               alpha=0.5 if small else 0.25, color="tab:gray", linewidths=0)
    ids = list(labels)
    ax.scatter(points[ids, 0], points[ids, 1], s=14, color="tab:blue")
    for i, label in labels.items():
        ax.annotate(label, points[i], xytext=(3, 3), textcoords="offset points", fontsize=8,
                    parse_math=False)
    ax.set_xlabel(f"PC 1 ({explained[0]:.1%} of the variance)")
    ax.set_ylabel(f"PC 2 ({explained[1]:.1%} of the variance)")
    ax.grid(True, alpha=0.3)
    ax.set_title(title, fontsize=9)
    return fig


def inspect_embeddings(run: str | Path, out: str | Path = "embeddings.png", *,
                       top: int = DEFAULT_TOP, text: str | Path | None = None) -> Picture:
    """Draw RUN's token embeddings in 2-D (PCA) into the PNG ``out``, the ``top`` most frequent
    tokens labelled (counted in ``text``, else the training data; else the lowest ids, said in
    the title and in a warning)."""
    from ..generation import load_generator

    if top < 1:
        raise InputError(f"top {top}: label at least 1 token")
    png_path(out)
    config, model, tokenizer = load_generator(run)
    table = embedding_table(model)
    vocab = min(len(table), tokenizer.vocab_size)
    counts, origin = token_counts(config, tokenizer, text)
    if counts is None or not counts[:vocab].any():
        reason = origin if counts is None else f"{origin}: no token of this vocabulary there"
        warnings.warn(f"labelling the {min(top, vocab)} lowest token ids, not the most frequent: "
                      f"{reason}", stacklevel=2)
        chosen = list(range(min(top, vocab)))
        what = origin = "the lowest ids (no token counts)"
    else:
        counts = counts[:vocab]
        order = np.argsort(-counts, kind="stable")
        chosen = [int(i) for i in order[:top] if counts[i] > 0]
        what = f"the most frequent, {origin}"
    labels = {i: token_label(tokenizer.decode([i]), 12) for i in chosen}
    title = (f"token embeddings of {Path(run).name}: {len(table)} tokens, PCA to 2-D\n"
             f"labelled ({len(labels)}): {what}")
    path = save_png(plot_embeddings(table, labels, title, seed=config.seed), out)
    return Picture(path, 1, f"{len(table)} tokens, {len(labels)} labelled, {origin}")
