"""``llmbricks generate``: continue a prompt with a model from a config or a model directory."""

from __future__ import annotations

import click

from llmbricks.cli.options import check_run_dir, sampling_options, set_option


@click.command()
@click.argument("source", metavar="[RUN]", required=False)
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="Build a randomly initialized model from this config (seeded by its `seed`).")
@set_option
@click.option("--prompt", "-p", help="Text to continue.")
@click.option("--instruction", "-i", help="Ask an instruction-finetuned run: the run's template "
              "(data.prompt; else the model's own chat template; else alpaca) wraps it, and only "
              "the response is printed.")
@click.option("--input", "input_text", default="", help="The instruction's input (with --instruction).")
# Ranges are checked by the core (check_generation_params), as for the Python API: one policy.
@click.option("--max-new-tokens", "-n", default=50, show_default=True, type=int,
              help="How many tokens to add (0 to 16777216).")
@sampling_options
@click.option("--seed", type=int, help="Seed for sampling, 0 to 2**63-1 (the model's own seed is "
              "its config's).")
@click.option("--stop", metavar="TOKEN", help="The special token that ends the text (default: the "
              "tokenizer's eos_token, else <|endoftext|> when it has it; with --instruction, the "
              "template's end token).")
@click.option("--stream", is_flag=True, help="Print tokens as they are generated.")
@click.option("--no-cache", is_flag=True, help="Recompute the whole context every step.")
@click.option("--prompt-lookup", metavar="N", default=0, show_default=True, type=int,
              help="Greedy only: check up to N tokens copied from the context per forward pass "
                   "(prompt-lookup decoding). Same text; faster when the text repeats itself.")
def generate(source: str | None, config_file: str | None, overrides: tuple[str, ...],
             prompt: str | None, instruction: str | None, input_text: str, max_new_tokens: int,
             temperature: float, top_k: int | None, top_p: float | None, seed: int | None,
             stop: str | None, stream: bool, no_cache: bool, prompt_lookup: int) -> None:
    """Generate text after PROMPT from RUN (a run directory, or a model directory such as `import
    gpt2` writes) or from a randomly initialized model built from --config.

    With --instruction (and --input), the run's prompt template makes the prompt, as instruction
    finetuning did, and the response alone is printed."""
    from llmbricks.core.store.text_input import check_text
    from llmbricks.core.tasks.generation import check_generation_params, stop_token_id
    from llmbricks.core.tasks.generation import generate as run

    check_generation_params(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k,
                            top_p=top_p, seed=seed, stop=stop, prompt_lookup=prompt_lookup,
                            cli=True)  # before the model loads: a typo fails at once
    for name, text in (("--prompt", prompt), ("--instruction", instruction), ("--input", input_text)):
        if text:
            check_text(text, name)
    if (prompt is None) == (instruction is None):
        raise click.UsageError("give --prompt TEXT to continue, or --instruction TEXT to answer "
                               "(one of the two)")
    if instruction is None and input_text:
        raise click.UsageError("--input goes with --instruction")
    if prompt is not None and not prompt:
        raise click.UsageError("--prompt is empty: give some text to continue")
    if instruction is not None and not instruction.strip():
        raise click.UsageError("--instruction is empty: give an instruction")
    if source is not None and overrides:
        raise click.UsageError("--set applies to --config, not to a saved run or model")
    if prompt_lookup and (temperature > 0 or no_cache):
        raise click.UsageError("--prompt-lookup needs greedy decoding (-t 0) and the cache "
                               "(no --no-cache)")
    config, model, tokenizer = _load(source, config_file, overrides)
    if stop is not None:
        stop_token_id(tokenizer, stop, cli=True)  # named as the flag, before any generation
    shown = "" if instruction is not None else prompt
    started = [instruction is None]  # a response is printed from its first visible character

    def echo(row: int, text: str) -> None:
        if not started[0]:
            text = text.lstrip()
            started[0] = bool(text)
        click.echo(text, nl=False)

    if stream:
        click.echo(shown, nl=False)
    options = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k,
                   top_p=top_p, seed=seed, stop=stop, use_cache=not no_cache,
                   on_text=echo if stream else None, prompt_lookup=prompt_lookup)
    if instruction is not None:
        from llmbricks.core.tasks.instruction import answer

        # The run's template (data.prompt, else the model's own chat template, else alpaca),
        # encoded as in training, stopped at the template's end token; stripped.
        text = answer(model, tokenizer, config, instruction, input_text, **options)
    else:
        text = run(model, tokenizer, prompt, **options)
    click.echo("" if stream else shown + text)


def _load(source: str | None, config_file: str | None, overrides: tuple[str, ...]):
    import torch

    from llmbricks.core.build import build_model
    from llmbricks.core.config import load_config
    from llmbricks.core.store.token_cache import ready_tokenizer

    if (source is None) == (config_file is None):
        raise click.UsageError("give a RUN (run or model directory) or --config CONFIG (one of the two)")
    if source is not None:
        return load_source(source)
    config = load_config(config_file, overrides)
    tokenizer, _ = ready_tokenizer(config)
    torch.manual_seed(config.seed)
    return config, build_model(config, tokenizer=tokenizer), tokenizer


def load_source(source: str):
    """``(config, model, tokenizer)`` of RUN: a usage error when it is not a directory."""
    from llmbricks.core.tasks.generation import load_generator

    check_run_dir(source)
    return load_generator(source)
