"""Attention weights per layer and head on one prompt: ``llmbricks inspect attention``.

Each attention layer is asked for its weights ``softmax(cap(q k^T * scale) + bias, hidden -inf)``
through ``Attention.attention_weights(x, pos)``, with the very inputs ``x`` and positions ``pos``
it receives in one no-grad forward pass (a forward pre-hook on each layer, removed after). A
fused kind never forms these weights; it recomputes them from its queries and keys, so ``sdpa``
draws what ``mha`` computes. A kind that cannot say is an error naming it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ...errors import ComponentError, InputError
from ...interfaces import Attention, Model, Tokenizer
from .figure import Picture, count, label_ticks, new_figure, save_png, token_label

#: More panels than this make an unreadable PNG: pick layers and heads instead.
MAX_PANELS = 144


def attention_weights(model: Model, ids: Sequence[int] | Tensor) -> Tensor:
    """The weights ``[layers, heads, T, T]`` the model gives token ids ``[T]``, in layer order.

    Row ``i`` of a head's ``[T, T]`` is query ``i``'s distribution over the keys: it sums to 1,
    and keys after ``i`` (or outside a sliding window) get exactly 0. Computed in eval mode
    (no dropout) without gradients; the model's mode is restored after.
    """
    device = next(model.parameters()).device
    ids = torch.as_tensor(ids, dtype=torch.long, device=device).reshape(1, -1)
    layers = [m for m in model.modules() if isinstance(m, Attention)]
    if not layers:
        raise ComponentError(f"model '{model.name}' has no attention layer: nothing to draw")
    captured: list[Tensor] = []

    def capture(module: Attention, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        x = args[0]
        pos = args[1] if len(args) > 1 else kwargs["pos"]
        weights = module.attention_weights(x, pos)
        if weights is None:
            raise ComponentError(
                f"attention '{module.name}' does not give its attention weights "
                "(Attention.attention_weights returns None): inspect a run whose attention kind "
                "gives them, or implement attention_weights(x, pos) on it")
        captured.append(weights[0].float().cpu())

    handles = [m.register_forward_pre_hook(capture, with_kwargs=True) for m in layers]
    training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model.hidden(ids)
    finally:
        for handle in handles:
            handle.remove()
        model.train(training)
    return torch.stack(captured)


def check_prompt(prompt: str) -> str:
    """``prompt`` when it is text to look at: not empty, valid UTF-8 (one line, exit 2)."""
    from ...store.text_input import check_text

    if not prompt:
        raise InputError("the prompt is empty: give some text to look at")
    return check_text(prompt, "the prompt")


def prompt_ids(tokenizer: Tokenizer, prompt: str, context: int) -> list[int]:
    """``prompt``'s token ids, refused when empty or longer than ``context`` (one line, exit 2)."""
    ids = tokenizer.encode(check_prompt(prompt), allowed_special="all")
    if not ids:
        raise InputError("the prompt encodes to no tokens: give some text to look at")
    if len(ids) > context:
        raise InputError(f"the prompt is {len(ids)} tokens, longer than the model's context of "
                         f"{context}: give a shorter prompt (at most {context} tokens)")
    return list(ids)


def pick(indices: Sequence[int] | None, count: int, what: str) -> list[int]:
    """The chosen ``indices`` of ``count`` layers or heads (all when ``None``), in order, once."""
    if indices is None:
        return list(range(count))
    if not indices:
        raise InputError(f"no {what} chosen: give at least one, from 0 to {count - 1}")
    bad = [i for i in indices if not 0 <= i < count]
    if bad:
        raise InputError(f"{what} {bad[0]} does not exist: the model has {count} {what}s, "
                         f"0 to {count - 1}")
    return list(dict.fromkeys(indices))


def parse_indices(specs: Sequence[str], what: str) -> list[int] | None:
    """``("0", "2-4")`` -> ``[0, 2, 3, 4]``: what ``--layer``/``--head`` take (comma lists too);
    ``None`` when nothing is given (all of them)."""
    chosen: list[int] = []
    for spec in specs:
        for part in spec.split(","):
            text = part.strip()
            first, dash, last = text.partition("-")
            try:
                lo = int(first)
                hi = int(last) if dash else lo
            except ValueError:
                raise InputError(f"--{what} {spec!r}: expected a number or a range such as 0-3"
                                 ) from None
            if hi < lo:
                raise InputError(f"--{what} {spec!r}: the range {lo}-{hi} is empty; write it "
                                 "low-high")
            chosen.extend(range(lo, hi + 1))
    return chosen or None


def plot_attention(weights: Tensor, tokens: Sequence[str], *, layers: Sequence[int] | None = None,
                   heads: Sequence[int] | None = None, title: str = "attention weights") -> Any:
    """A figure with one panel per (layer, head): rows are layers, columns heads.

    In each panel row ``i`` (query) against column ``j`` (key) is the weight, on one colour
    scale from 0 to 1 shared by every panel; the token strings label both axes. Returns the
    matplotlib ``Figure`` (its first ``len(layers) * len(heads)`` axes are the panels).
    """
    n_layers, n_heads, t, _ = weights.shape
    layers, heads = pick(layers, n_layers, "layer"), pick(heads, n_heads, "head")
    panels = len(layers) * len(heads)
    if panels > MAX_PANELS:
        raise InputError(f"{len(layers)} layers x {len(heads)} heads = {panels} panels, more than "
                         f"{MAX_PANELS} fit in a readable picture: pick some with --layer and "
                         "--head (e.g. --layer 0-3 --head 0)")
    labels = [token_label(tok) for tok in tokens]
    inches = min(max(0.14 * t + 0.9, 1.8), 4.5)
    fig, axes = new_figure(panels, len(heads), inches, extra_width=0.8)
    image = None
    for n, ax in enumerate(axes):
        layer, head = layers[n // len(heads)], heads[n % len(heads)]
        image = ax.imshow(weights[layer, head].numpy(), cmap="viridis", vmin=0.0, vmax=1.0,
                          interpolation="nearest")
        ax.set_title(f"layer {layer}, head {head}", fontsize=8)
        first_column, last_row = n % len(heads) == 0, n >= panels - len(heads)
        label_ticks(ax, labels, x=last_row, y=first_column, inches=inches)
        if not last_row:
            ax.set_xticks([])
        if not first_column:
            ax.set_yticks([])
        if first_column:
            ax.set_ylabel("query")
        if last_row:
            ax.set_xlabel("key")
    fig.colorbar(image, ax=axes, shrink=0.8, label="attention weight")
    fig.suptitle(title)
    return fig


def inspect_attention(run: str | Path, prompt: str, out: str | Path = "attention.png", *,
                      layers: Sequence[int] | None = None, heads: Sequence[int] | None = None
                      ) -> Picture:
    """Draw RUN's attention weights on ``prompt`` into the PNG ``out``; one panel per (layer, head).

    ``layers`` and ``heads`` choose the panels (default: every one, up to ``MAX_PANELS``).
    RUN is a run or model directory, loaded as ``generate`` loads it.
    """
    from ..generation import load_generator
    from .figure import png_path

    png_path(out)  # a bad path or prompt fails before the model loads
    check_prompt(prompt)
    config, model, tokenizer = load_generator(run)
    ids = prompt_ids(tokenizer, prompt, config.model.context_length)
    weights = attention_weights(model, ids)
    tokens = [tokenizer.decode([i]) for i in ids]
    n_layers, n_heads = weights.shape[:2]
    layers, heads = pick(layers, n_layers, "layer"), pick(heads, n_heads, "head")
    attention = config.model.attention.name
    fig = plot_attention(weights, tokens, layers=layers, heads=heads,
                         title=f"attention weights: {Path(run).name} ({attention}), "
                               f"{len(ids)} tokens")
    path = save_png(fig, out)
    return Picture(path, len(layers) * len(heads), f"{count(len(layers), 'layer')} x "
                   f"{count(len(heads), 'head')}, {count(len(ids), 'token')}")
