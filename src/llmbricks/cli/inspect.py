"""``llmbricks inspect attention|positional|embeddings``: PNGs of what a model does inside."""

from __future__ import annotations

import click

from llmbricks.cli.options import check_run_dir


def _wrote(picture) -> None:
    click.echo(f"wrote {picture.path}: {picture.summary}")


def _out(default: str) -> click.Option:
    return click.option("--out", "-o", default=default, show_default=True,
                        type=click.Path(dir_okay=False),
                        help="The PNG to write (replaced atomically; missing folders are made).")


@click.group()
def inspect() -> None:
    """Look inside a model: attention weights, positional encodings, token embeddings (PNGs)."""


@inspect.command("attention", short_help="Attention weights per layer and head on a prompt.")
@click.argument("run", metavar="RUN")
@click.option("--prompt", "-p", required=True, help="The text whose attention is drawn (at most "
              "the model's context, in tokens).")
@click.option("--layer", "layers", multiple=True, metavar="N|A-B",
              help="Layers to draw: a number, a range 0-3 or a list 0,2; repeatable. Default: "
                   "every layer.")
@click.option("--head", "heads", multiple=True, metavar="N|A-B",
              help="Heads to draw, as --layer. Default: every head.")
@_out("attention.png")
def attention(run: str, prompt: str, layers: tuple[str, ...], heads: tuple[str, ...],
              out: str) -> None:
    """Draw RUN's attention weights on --prompt: one panel per layer (rows) and head (columns),
    query tokens down, key tokens across, one colour scale from 0 to 1.

    RUN is a run or model directory. A fused attention kind (sdpa) recomputes its weights from
    its queries and keys, so every built-in kind can be drawn. At most 144 panels: pick some
    with --layer and --head on a large model."""
    from llmbricks.core.tasks.inspection import inspect_attention, parse_indices

    check_run_dir(run)
    _wrote(inspect_attention(run, prompt, out, layers=parse_indices(layers, "layer"),
                             heads=parse_indices(heads, "head")))


@inspect.command("positional", short_help="What each positional encoding does, side by side.")
@click.argument("source", metavar="CONFIG")
@click.option("--kind", "kinds", multiple=True, metavar="NAME",
              help="Draw only this positional kind (repeatable). Default: every registered kind.")
@click.option("--positions", type=click.IntRange(min=1), default=None,
              help="Positions to draw (default: 128, or the context length if shorter).")
@_out("positional.png")
def positional(source: str, kinds: tuple[str, ...], positions: int | None, out: str) -> None:
    """Draw what each positional encoding does at CONFIG's dims, one panel per kind: the vector
    added at each position (absolute, sinusoidal), the rotation angle of each frequency pair
    (rope), the score bias of query and key (alibi, t5) for head 0, or nothing (none).

    CONFIG is a config file, or a run or model directory (then its own kind is drawn from its
    trained weights). CONFIG's own kind is marked with a star."""
    from llmbricks.core.tasks.inspection import inspect_positional

    _wrote(inspect_positional(source, out, kinds=kinds or None, positions=positions))


@inspect.command("embeddings", short_help="Token embeddings in 2-D (PCA), frequent tokens labelled.")
@click.argument("run", metavar="RUN")
@click.option("--top", type=click.IntRange(min=1), default=40, show_default=True,
              help="How many of the most frequent tokens to label.")
@click.option("--text", "text_file", type=click.Path(dir_okay=False),
              help="Count token frequencies in this text file (default: the run's training data "
                   "when it is on this machine, else the lowest ids are labelled).")
@_out("embeddings.png")
def embeddings(run: str, top: int, text_file: str | None, out: str) -> None:
    """Draw RUN's token embeddings projected to 2-D (PCA: the two directions of most variance,
    with the share each explains), the most frequent tokens labelled."""
    from llmbricks.core.tasks.inspection import inspect_embeddings

    check_run_dir(run)
    _wrote(inspect_embeddings(run, out, top=top, text=text_file))
