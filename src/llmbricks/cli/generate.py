"""``llmbricks generate``: continue a prompt with a model from a config or a model directory."""

from __future__ import annotations

from pathlib import Path

import click

from llmbricks.cli.options import set_option


@click.command()
@click.argument("source", metavar="[RUN]", required=False)
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="Build a randomly initialized model from this config (seeded by its `seed`).")
@set_option
@click.option("--prompt", "-p", help="Text to continue.")
@click.option("--instruction", "-i", help="Ask an instruction-finetuned run: the run's prompt "
              "template (data.prompt; alpaca when unset) wraps it, and only the response is printed.")
@click.option("--input", "input_text", default="", help="The instruction's input (with --instruction).")
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
def generate(source: str | None, config_file: str | None, overrides: tuple[str, ...],
             prompt: str | None, instruction: str | None, input_text: str, max_new_tokens: int,
             temperature: float, top_k: int | None, top_p: float | None, seed: int | None,
             stream: bool, no_cache: bool, prompt_lookup: int) -> None:
    """Generate text after PROMPT from RUN (a run directory, or a model directory such as `import
    gpt2` writes) or from a randomly initialized model built from --config.

    With --instruction (and --input), the run's prompt template makes the prompt, as instruction
    finetuning did, and the response alone is printed."""
    from llmbricks.core.tasks.generation import generate as run

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
    shown = prompt
    if instruction is not None:
        from llmbricks.core.tasks.instruction import instruction_prompt

        prompt, shown = instruction_prompt(config, instruction, input_text), ""

    started = [instruction is None]  # a response is printed from its first visible character

    def echo(row: int, text: str) -> None:
        if not started[0]:
            text = text.lstrip()
            started[0] = bool(text)
        click.echo(text, nl=False)

    if stream:
        click.echo(shown, nl=False)
    text = run(model, tokenizer, prompt, max_new_tokens=max_new_tokens, temperature=temperature,
               top_k=top_k, top_p=top_p, seed=seed, use_cache=not no_cache,
               on_text=echo if stream else None, prompt_lookup=prompt_lookup)
    if instruction is not None and not stream:
        text = text.strip()  # as responses.json holds it
    click.echo("" if stream else shown + text)


def _load(source: str | None, config_file: str | None, overrides: tuple[str, ...]):
    import torch

    from llmbricks.core.build import build_model
    from llmbricks.core.config import load_config
    from llmbricks.core.store.token_cache import ready_tokenizer

    if (source is None) == (config_file is None):
        raise click.UsageError("give a RUN (run or model directory) or --config CONFIG (one of the two)")
    if source is not None:
        from llmbricks.core.store.runs import load_run

        if not Path(source).is_dir():
            raise click.UsageError(f"RUN '{source}' is not a directory")
        config, model, tokenizer = load_run(source)
        if tokenizer is None:
            tokenizer, _ = ready_tokenizer(config)
        return config, model, tokenizer
    config = load_config(config_file, overrides)
    tokenizer, _ = ready_tokenizer(config)
    torch.manual_seed(config.seed)
    return config, build_model(config, tokenizer=tokenizer), tokenizer
