"""``llmbricks classify``: label texts with a classification run (or model directory)."""

from __future__ import annotations

import shutil

import click

from llmbricks.cli.options import check_run_dir, echo_json, json_option


@click.command()
@click.argument("source", metavar="RUN")
@click.argument("texts", metavar="[TEXT]...", nargs=-1)
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True,
              help="Texts per forward pass.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:1, mps...")
@json_option
def classify(source: str, texts: tuple[str, ...], batch_size: int, device: str,
             as_json: bool) -> None:
    """Print the label and its probability for each TEXT, classified by RUN (a run trained with
    the classify trainer). With no TEXT, classify each non-empty line of stdin."""
    from llmbricks.core.tasks.classifier import load_classifier

    check_run_dir(source)
    if not texts:
        stdin = click.get_text_stream("stdin")
        if stdin.isatty():
            raise click.UsageError("no text: give TEXT arguments, or lines on stdin")
        texts = tuple(line.rstrip("\r\n") for line in stdin if line.strip())
        if not texts:
            raise click.UsageError("no text: stdin held no non-empty line")
    predictions = load_classifier(source, device).classify(texts, batch_size=batch_size)
    if as_json:
        echo_json([{"text": p.text, "label": p.label, "probability": p.probability,
                    "probabilities": p.probabilities} for p in predictions])
        return
    width = max(len(p.label) for p in predictions)
    room = max(20, shutil.get_terminal_size((100, 24)).columns - width - 10)
    for p in predictions:
        text = " ".join(p.text.split())
        text = text if len(text) <= room else text[:room - 3] + "..."
        click.echo(f"{p.label:<{width}}  {p.probability:6.1%}  {text}")
