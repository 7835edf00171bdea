"""``llmbricks tokenizer train|encode|decode|inspect``."""

from __future__ import annotations

import sys
from typing import Any

import click

from llmbricks.cli.options import console, echo_json, load, set_option

TOKENIZER_HELP = ("A saved tokenizer directory, or a component spec in YAML "
                  "(e.g. tiktoken, '{name: tiktoken, encoding: cl100k_base}').")
tokenizer_option = click.option("--tokenizer", "-t", "tokenizer_arg", default="tiktoken",
                                show_default=True, help=TOKENIZER_HELP)


@click.group()
def tokenizer() -> None:
    """Train tokenizers and look at how they cut text."""


def _tokenizer(arg: str) -> Any:
    from pathlib import Path

    from llmbricks.core.build import load_tokenizer
    from llmbricks.core.config_io import parse_yaml
    from llmbricks.core.errors import ConfigError
    from llmbricks.core.registry import get_registry

    if Path(arg).is_dir():
        return load_tokenizer(arg)
    registry = get_registry()
    spec = registry.resolve("tokenizer", parse_yaml(arg, "--tokenizer"), "--tokenizer")
    tok = registry.build("tokenizer", spec)
    if not tok.is_trained:
        raise ConfigError(f"--tokenizer: '{spec.name}' learns its vocabulary from data; train it "
                          "first with `llmbricks tokenizer train CONFIG --out DIR` and pass DIR")
    return tok


def _text(text: tuple[str, ...]) -> str:
    return " ".join(text) if text else sys.stdin.read()


@tokenizer.command("train")
@click.argument("config_file", metavar="CONFIG")
@set_option
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False),
              help="Directory to save the trained tokenizer in.")
def train(config_file: str, overrides: tuple[str, ...], out: str) -> None:
    """Train CONFIG's model.tokenizer on CONFIG's data.source and save it to --out."""
    import time

    from llmbricks.core.build import build_tokenizer
    from llmbricks.core.errors import ConfigError
    from llmbricks.core.store.token_cache import iter_texts, text_source

    cfg = load(config_file, overrides)
    tok = build_tokenizer(cfg)
    if tok is None:
        raise ConfigError("model.tokenizer: not set; name a trainable tokenizer (bpe, char, regex)")
    if not tok.trainable:
        raise ConfigError(f"model.tokenizer: '{tok.name}' is pretrained, not trainable")
    source = text_source(cfg)
    start = time.perf_counter()
    tok.train(iter_texts(source))
    tok.save(out)
    click.echo(f"trained {tok.name} on {source.describe()}: vocabulary {tok.vocab_size:,} in "
               f"{time.perf_counter() - start:.2f} s -> {out}")


@tokenizer.command("encode")
@tokenizer_option
@click.option("--allow-special", is_flag=True, help="Encode special tokens such as <|endoftext|>.")
@click.option("--json", "as_json", is_flag=True, help="Print the ids as a JSON list.")
@click.argument("text", nargs=-1)
def encode(tokenizer_arg: str, allow_special: bool, as_json: bool, text: tuple[str, ...]) -> None:
    """Print the token ids of TEXT (or of standard input)."""
    tok = _tokenizer(tokenizer_arg)
    ids = tok.encode(_text(text), allowed_special="all" if allow_special else ())
    if as_json:
        echo_json(ids)
    else:
        click.echo(" ".join(map(str, ids)))


@tokenizer.command("decode")
@tokenizer_option
@click.argument("ids", nargs=-1, type=int)
def decode(tokenizer_arg: str, ids: tuple[int, ...]) -> None:
    """Print the text of token IDS (or of whitespace-separated ids on standard input)."""
    tok = _tokenizer(tokenizer_arg)
    if not ids:
        try:
            ids = tuple(int(x) for x in sys.stdin.read().split())
        except ValueError as exc:
            raise click.UsageError(f"token ids must be integers: {exc}") from None
    click.echo(tok.decode(ids))


@tokenizer.command("inspect")
@tokenizer_option
@click.option("--allow-special", is_flag=True, help="Encode special tokens such as <|endoftext|>.")
@click.argument("text", nargs=-1)
def inspect(tokenizer_arg: str, allow_special: bool, text: tuple[str, ...]) -> None:
    """Show where TEXT is cut into tokens, with each token's id (colors on a terminal)."""
    from rich.markup import escape

    tok = _tokenizer(tokenizer_arg)
    source = _text(text)
    ids = tok.encode(source, allowed_special="all" if allow_special else ())
    pieces = [tok.decode([i]) for i in ids]
    out = console()
    if out.is_terminal:
        # Named colors survive 16-color terminals; alternate them so neighbours differ.
        colors = ["black on cyan", "black on yellow", "black on green", "white on blue",
                  "black on magenta"]
        out.print("".join(f"[{colors[n % len(colors)]}]{escape(p)}[/]" for n, p in enumerate(pieces)),
                  highlight=False)
    else:
        out.print(escape("|".join(pieces)), highlight=False)
    out.print(escape(" ".join(f"{i}:{p!r}" for i, p in zip(ids, pieces, strict=True))),
              soft_wrap=True, highlight=False)
    chars = len(source)
    out.print(f"{len(ids)} tokens, {chars} characters ({chars / max(len(ids), 1):.2f} chars/token), "
              f"vocabulary {tok.vocab_size:,}", highlight=False)
