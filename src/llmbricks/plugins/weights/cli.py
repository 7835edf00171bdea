"""``llmbricks import gpt2 HF_DIR OUT`` and ``llmbricks export hf MODEL_DIR OUT``: thin Click verbs."""

from __future__ import annotations

import click

overwrite_option = click.option("--overwrite", is_flag=True,
                                help="Replace OUT if it exists and is not empty.")


@click.group("import")
def import_group() -> None:
    """Import weights from other tools into a llmbricks model directory."""


@import_group.command("gpt2")
@click.argument("hf_dir", type=click.Path(path_type=str))
@click.argument("out", type=click.Path(path_type=str))
@click.option("--attention", type=click.Choice(["mha", "sdpa"]), default="sdpa", show_default=True,
              help="Attention component to write in the config (same weights, sdpa is faster).")
@overwrite_option
def import_gpt2_command(hf_dir: str, out: str, attention: str, overwrite: bool) -> None:
    """Convert a Hugging Face GPT-2 folder (config.json + model.safetensors) into OUT.

    OUT becomes a model directory: config.yaml, model.safetensors, tokenizer/. Nothing is
    downloaded; bring the folder (e.g. from GPT2LMHeadModel.save_pretrained).
    """
    from llmbricks.plugins.weights.gpt2_hf import import_gpt2

    result = import_gpt2(hf_dir, out, overwrite=overwrite, attention=attention)
    m = result.config.model
    click.echo(f"imported GPT-2 from {hf_dir} into {out}: {result.parameters:,} parameters, "
               f"{m.n_layers} layers, {m.emb_dim} dims, {m.n_heads} heads, context "
               f"{m.context_length}, vocab {m.vocab_size}")
    for note in result.notes:
        click.echo(f"note: {note}", err=True)


@click.group("export")
def export_group() -> None:
    """Export a llmbricks model directory to other tools' formats."""


@export_group.command("hf")
@click.argument("model_dir", type=click.Path(path_type=str))
@click.argument("out", type=click.Path(path_type=str))
@overwrite_option
def export_hf_command(model_dir: str, out: str, overwrite: bool) -> None:
    """Write MODEL_DIR as a Hugging Face GPT-2 folder (config.json + model.safetensors).

    Only GPT-2-shaped models export: absolute positions, layernorm, gelu, full multi-head
    attention, an lm head. transformers.GPT2LMHeadModel.from_pretrained(OUT) loads the result.
    """
    from llmbricks.plugins.weights.gpt2_hf import export_hf

    result = export_hf(model_dir, out, overwrite=overwrite)
    c = result.hf_config
    click.echo(f"exported {model_dir} to {out} (GPT2LMHeadModel: {c['n_layer']} layers, "
               f"{c['n_embd']} dims, vocab {c['vocab_size']}, "
               f"{'tied' if c['tie_word_embeddings'] else 'untied'} lm_head)")
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
