"""``llmbricks data prepare|stats``."""

from __future__ import annotations

import click

from llmbricks.cli.options import command_with_config, echo_json, json_option, load


@click.group()
def data() -> None:
    """Tokenize and cache a config's data, and report on it."""


@data.command("prepare")
@command_with_config
@json_option
def prepare(config_file: str, overrides: tuple[str, ...], as_json: bool) -> None:
    """Tokenize CONFIG's data.source with its model.tokenizer into a token cache (reused after)."""
    from llmbricks.core.store.token_cache import prepare_data

    cfg = load(config_file, overrides)
    prepared = prepare_data(cfg)
    info = prepared.cache.info
    report = {
        "source": info.source, "tokenizer": info.tokenizer, "tokens": info.n_tokens,
        "characters": info.n_chars, "vocab_size": info.vocab_size,
        "vocab_used": info.distinct_ids, "dtype": info.dtype, "cache": str(prepared.cache.path),
        "tokenizer_trained": prepared.trained_tokenizer, "build_seconds": info.seconds,
        "reused": prepared.cache.reused,
    }
    if as_json:
        echo_json(report)
        return
    click.echo(f"source:     {info.source}")
    click.echo(f"tokenizer:  {info.tokenizer}" + (" (trained now)" if prepared.trained_tokenizer else ""))
    click.echo(f"tokens:     {info.n_tokens:,} from {info.n_chars:,} characters "
               f"({info.n_chars / max(info.n_tokens, 1):.2f} chars/token)")
    click.echo(f"vocab used: {info.distinct_ids:,} of {info.vocab_size:,} ids "
               f"({100 * info.distinct_ids / max(info.vocab_size, 1):.1f}%)")
    how = "reused" if prepared.cache.reused else f"built in {info.seconds:.2f} s"
    click.echo(f"cache:      {prepared.cache.path} ({info.dtype}, {how})")


@data.command("stats")
@command_with_config
@click.option("--batches", "show_batches", type=click.IntRange(0, 100), default=0, show_default=True,
              help="Also print the first N training batches (inputs and targets, windows in "
                   "order), as the book prints its dataloader's first batch.")
@json_option
def stats(config_file: str, overrides: tuple[str, ...], show_batches: int, as_json: bool) -> None:
    """Tokens, split sizes and windows per epoch for CONFIG (prepares the cache if needed)."""
    from llmbricks.core.store.token_cache import prepare_data
    from llmbricks.core.train.windows import SlidingWindowDataset, first_batches

    cfg = load(config_file, overrides)
    prepared = prepare_data(cfg)
    train, val = prepared.split(cfg.data.val_fraction)
    length = cfg.model.context_length
    stride = cfg.data.stride or length
    windows = {name: len(SlidingWindowDataset(part, length, stride))
               for name, part in (("train", train), ("val", val))}
    batches = {name: n // cfg.train.batch_size for name, n in windows.items()}
    report = {"tokens": len(prepared.cache), "train_tokens": len(train), "val_tokens": len(val),
              "context_length": length, "stride": stride, "windows": windows,
              "batches": batches, "batch_size": cfg.train.batch_size,
              "vocab_used": prepared.cache.info.distinct_ids,
              "vocab_size": prepared.tokenizer.vocab_size}
    shown = first_batches(train, max_length=length, batch_size=cfg.train.batch_size,
                          stride=stride, count=show_batches) if show_batches else []
    if show_batches:
        report["first_batches"] = [{"inputs": x.tolist(), "targets": y.tolist()} for x, y in shown]
    if as_json:
        echo_json(report)
        return
    click.echo(f"tokens:  {len(prepared.cache):,} (train {len(train):,}, val {len(val):,}; "
               f"val_fraction {cfg.data.val_fraction})")
    click.echo(f"windows: context {length}, stride {stride}: train {windows['train']:,}, "
               f"val {windows['val']:,}")
    click.echo(f"batches: batch size {cfg.train.batch_size}: train {batches['train']:,}, "
               f"val {batches['val']:,} per epoch")
    click.echo(f"vocab:   {prepared.cache.info.distinct_ids:,} of {prepared.tokenizer.vocab_size:,} ids used")
    for number, (inputs, targets) in enumerate(shown, 1):
        click.echo(f"batch {number}: inputs -> targets")
        for x, y in zip(inputs.tolist(), targets.tolist(), strict=True):
            click.echo(f"  {_ids(x)} -> {_ids(y)}")


def _ids(ids: list[int], shown: int = 8) -> str:
    """A window's ids; of a long one the first ``shown``, then how many there are."""
    head = ", ".join(map(str, ids[:shown]))
    return f"[{head}]" if len(ids) <= shown else f"[{head}, ... ({len(ids)} ids)]"
