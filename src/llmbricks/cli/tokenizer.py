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


def _text(text: tuple[str, ...], file: str | None = None) -> str:
    """TEXT, else --file's text, else standard input: strict UTF-8, bad bytes named by offset."""
    from llmbricks.core.store.text_input import check_text, decode_text, read_text

    if file is not None:
        if text:
            raise click.UsageError("give the text as TEXT or --file, not both")
        return read_text(file, "--file")
    if text:
        return check_text(" ".join(text), "TEXT")
    stdin = getattr(sys.stdin, "buffer", None)
    if stdin is None:  # a replaced sys.stdin (an in-process runner) gives str only
        return check_text(sys.stdin.read(), "standard input")
    return decode_text(stdin.read(), "standard input")


def _is_tokenizer_dir(directory: str) -> bool:
    """Whether ``directory`` holds a saved tokenizer (a ``tokenizer.json`` naming its component)."""
    import json
    from pathlib import Path

    state = Path(directory) / "tokenizer.json"
    try:
        return "name" in json.loads(state.read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return False


file_option = click.option("--file", "-f", "file", type=click.Path(dir_okay=True),
                           help="Read the text from this UTF-8 file instead of TEXT or stdin.")


@tokenizer.command("train")
@click.argument("config_file", metavar="CONFIG")
@set_option
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False),
              help="Directory to save the trained tokenizer in.")
@click.option("--overwrite", is_flag=True,
              help="Replace --out when it holds an unreadable tokenizer.json (a saved tokenizer is "
                   "replaced anyway; any other non-empty folder never is).")
def train(config_file: str, overrides: tuple[str, ...], out: str, overwrite: bool) -> None:
    """Train CONFIG's model.tokenizer on CONFIG's data.source and save it to --out.

    --out must be new, empty, or an earlier tokenizer's directory (replaced whole); any other
    non-empty directory is refused before training, even with --overwrite. The directory appears
    complete or not at all.
    """
    import time

    from llmbricks.core.build import build_tokenizer
    from llmbricks.core.errors import ConfigError
    from llmbricks.core.store.atomic import OutputKind, atomic_directory, check_output_dir
    from llmbricks.core.store.token_cache import iter_texts, text_source

    kind = OutputKind("tokenizer directory", ("tokenizer.json",))
    retrain = overwrite or _is_tokenizer_dir(out)
    check_output_dir(out, overwrite=retrain, kind=kind)  # before the slow work
    cfg = load(config_file, overrides)
    tok = build_tokenizer(cfg)
    if tok is None:
        raise ConfigError("model.tokenizer: not set; name a trainable tokenizer (bpe, char, regex)")
    if not tok.trainable:
        raise ConfigError(f"model.tokenizer: '{tok.name}' is pretrained, not trainable")
    source = text_source(cfg)
    start = time.perf_counter()
    tok.train(iter_texts(source))
    with atomic_directory(out, overwrite=retrain, kind=kind) as tmp:
        tok.save(tmp)
    click.echo(f"trained {tok.name} on {source.describe()}: vocabulary {tok.vocab_size:,} in "
               f"{time.perf_counter() - start:.2f} s -> {out}")


@tokenizer.command("encode")
@tokenizer_option
@click.option("--allow-special", is_flag=True, help="Encode special tokens such as <|endoftext|>.")
@click.option("--json", "as_json", is_flag=True, help="Print the ids as a JSON list.")
@file_option
@click.argument("text", nargs=-1)
def encode(tokenizer_arg: str, allow_special: bool, as_json: bool, file: str | None,
           text: tuple[str, ...]) -> None:
    """Print the token ids of TEXT (or of --file, or of standard input), which must be UTF-8."""
    source = _text(text, file)
    tok = _tokenizer(tokenizer_arg)
    ids = tok.encode(source, allowed_special="all" if allow_special else ())
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
            ids = tuple(int(x) for x in _text(()).split())
        except ValueError as exc:
            raise click.UsageError(f"token ids must be integers: {exc}") from None
    click.echo(tok.decode(ids))


@tokenizer.command("inspect")
@tokenizer_option
@click.option("--allow-special", is_flag=True, help="Encode special tokens such as <|endoftext|>.")
@file_option
@click.argument("text", nargs=-1)
def inspect(tokenizer_arg: str, allow_special: bool, file: str | None, text: tuple[str, ...]) -> None:
    """Show where TEXT (or --file, or stdin) is cut into tokens, with each token's id."""
    from rich.markup import escape

    source = _text(text, file)
    tok = _tokenizer(tokenizer_arg)
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
