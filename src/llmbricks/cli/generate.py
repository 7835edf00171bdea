"""``llmbricks generate``: continue a prompt with a model from a config or a model directory."""

from __future__ import annotations

from pathlib import Path

import click

from .options import set_option


@click.command()
@click.argument("source", metavar="[RUN]", required=False)
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="Build a randomly initialized model from this config (seeded by its `seed`).")
@set_option
@click.option("--prompt", "-p", required=True, help="Text to continue.")
@click.option("--max-new-tokens", "-n", default=50, show_default=True, type=click.IntRange(min=0))
@click.option("--temperature", "-t", default=0.0, show_default=True, type=click.FloatRange(min=0.0),
              help="0 = greedy.")
@click.option("--top-k", type=click.IntRange(min=1), help="Sample among the k most likely tokens.")
@click.option("--top-p", type=click.FloatRange(0.0, 1.0, min_open=True),
              help="Sample from the smallest set of tokens whose probability reaches p.")
@click.option("--seed", type=int, help="Seed for sampling (the model's own seed is its config's).")
@click.option("--stream", is_flag=True, help="Print tokens as they are generated.")
@click.option("--no-cache", is_flag=True, help="Recompute the whole context every step.")
@click.option("--prompt-lookup", metavar="N", default=0, show_default=True,
              type=click.IntRange(min=0),
              help="Greedy only: check up to N tokens copied from the context per forward pass "
                   "(prompt-lookup decoding). Same text; faster when the text repeats itself.")
def generate(source: str | None, config_file: str | None, overrides: tuple[str, ...], prompt: str,
             max_new_tokens: int, temperature: float, top_k: int | None, top_p: float | None,
             seed: int | None, stream: bool, no_cache: bool, prompt_lookup: int) -> None:
    """Generate text after PROMPT from RUN (a run directory, or a model directory such as `import
    gpt2` writes) or from a randomly initialized model built from --config."""
    from llmbricks.core.generation import generate as run

    if not prompt:
        raise click.UsageError("--prompt is empty: give some text to continue")
    if source is not None and overrides:
        raise click.UsageError("--set applies to --config, not to a saved run or model")
    if prompt_lookup and (temperature > 0 or no_cache):
        raise click.UsageError("--prompt-lookup needs greedy decoding (-t 0) and the cache "
                               "(no --no-cache)")
    model, tokenizer = _load(source, config_file, overrides)

    def echo(row: int, text: str) -> None:
        click.echo(text, nl=False)

    if stream:
        click.echo(prompt, nl=False)
    text = run(model, tokenizer, prompt, max_new_tokens=max_new_tokens, temperature=temperature,
               top_k=top_k, top_p=top_p, seed=seed, use_cache=not no_cache,
               on_text=echo if stream else None, prompt_lookup=prompt_lookup)
    click.echo("" if stream else prompt + text)


def _load(source: str | None, config_file: str | None, overrides: tuple[str, ...]):
    import torch

    from llmbricks.core.build import build_model
    from llmbricks.core.config import load_config
    from llmbricks.core.data import ready_tokenizer

    if (source is None) == (config_file is None):
        raise click.UsageError("give a RUN (run or model directory) or --config CONFIG (one of the two)")
    if source is not None:
        from llmbricks.core.runs import load_run

        if not Path(source).is_dir():
            raise click.UsageError(f"RUN '{source}' is not a directory")
        config, model, tokenizer = load_run(source)
        if tokenizer is None:
            tokenizer, _ = ready_tokenizer(config)
        return model, tokenizer
    config = load_config(config_file, overrides)
    tokenizer, _ = ready_tokenizer(config)
    torch.manual_seed(config.seed)
    return build_model(config, tokenizer=tokenizer), tokenizer
