"""``llmbricks eval``: loss and perplexity of a run or model directory on a text source."""

from __future__ import annotations

import click

from llmbricks.cli.options import echo_json, json_option


@click.command("eval")
@click.argument("source", metavar="RUN")
@click.option("--data", "data_spec", metavar="SOURCE",
              help="A text data source by name or spec, e.g. the_verdict or "
                   "'{name: text, path: notes.txt}' (default: the run's validation split; "
                   "for a classifier, a labeled source, default: its test split).")
@click.option("--batches", type=click.IntRange(min=1), help="Evaluate at most this many batches "
              "(default: all windows).")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@json_option
def evaluate(source: str, data_spec: str | None, batches: int | None, batch_size: int,
             as_json: bool) -> None:
    """Cross-entropy loss and perplexity of RUN (a run or model directory) on held-out text; for
    a classifier, accuracy, precision, recall and F1 on its test split or a labeled --data."""
    from llmbricks.core.tasks.evaluation import evaluate_run

    report = evaluate_run(source, data=data_spec, batch_size=batch_size, max_batches=batches)
    if as_json:
        echo_json(report)
        return
    if "accuracy" in report:  # a classifier
        loss = f" | loss {report['loss']:.4f}" if report.get("loss") is not None else ""
        click.echo(f"{report['data']}: accuracy {report['accuracy']:.1%}{loss} | macro F1 "
                   f"{report['macro_f1']:.3f} | {report['examples']:,} examples")
        for label in report["labels"]:
            click.echo(f"  {label}: precision {report['precision'][label]:.3f} recall "
                       f"{report['recall'][label]:.3f} F1 {report['f1'][label]:.3f} "
                       f"({report['support'][label]} examples)")
        return
    click.echo(f"{report['data']}: loss {report['loss']:.4f} | perplexity {report['perplexity']:.2f} "
               f"| {report['batches']} batches, {report['tokens']:,} tokens")
