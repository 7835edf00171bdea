"""``llmbricks import hf SOURCE OUT`` (``import gpt2`` too) and ``llmbricks export hf MODEL_DIR OUT``.

Thin Click verbs over ``families.import_hf`` and ``families.export_any``.
"""

from __future__ import annotations

import click

overwrite_option = click.option("--overwrite", is_flag=True,
                                help="Replace OUT if it is a directory of the same kind.")
attention_option = click.option(
    "--attention", type=click.Choice(["mha", "sdpa"]), default="sdpa", show_default=True,
    help="Attention component to write in the config (same weights, sdpa is faster).")


@click.group("import")
def import_group() -> None:
    """Import weights from other tools into a llmbricks model directory."""


def _import(source: str, out: str, revision: str | None, attention: str, overwrite: bool) -> None:
    from llmbricks.plugins.weights.families import import_hf

    result = import_hf(source, out, revision=revision, overwrite=overwrite, attention=attention)
    m = result.config.model
    kv = f" ({m.n_kv_heads} key/value)" if m.n_kv_heads != m.n_heads else ""
    from llmbricks.plugins.weights.families import DISPLAY_NAMES

    family = DISPLAY_NAMES.get(result.family, result.family)
    click.echo(f"imported {family} from {source} into {out}: {result.parameters:,} "
               f"parameters, {m.n_layers} layers, {m.emb_dim} dims, {m.n_heads} heads{kv}, "
               f"context {m.context_length}, vocab {m.vocab_size}")
    for note in result.notes:
        click.echo(f"note: {note}", err=True)


@import_group.command("hf")
@click.argument("source")
@click.argument("out", type=click.Path(path_type=str))
@click.option("--revision", default=None, help="A Hub branch, tag or commit (with a repo id).")
@attention_option
@overwrite_option
def import_hf_command(source: str, out: str, revision: str | None, attention: str,
                      overwrite: bool) -> None:
    """Convert a Hugging Face model (a folder, or a Hub repo id) into the model directory OUT.

    SOURCE is a folder with config.json and *.safetensors, or a Hub repo id (owner/name,
    needs llmbricks[hub]; HF_HOME, HF_TOKEN and HF_HUB_OFFLINE apply). Families: gpt2,
    llama, mistral, qwen2, qwen3, olmo2, gemma2, gemma3_text, phi3. OUT gets
    config.yaml, model.safetensors, tokenizer/ (from the folder's tokenizer.json)
    and the source's config.json (hf_config.json).
    """
    _import(source, out, revision, attention, overwrite)


@import_group.command("gpt2")
@click.argument("hf_dir", type=click.Path(path_type=str))
@click.argument("out", type=click.Path(path_type=str))
@attention_option
@overwrite_option
def import_gpt2_command(hf_dir: str, out: str, attention: str, overwrite: bool) -> None:
    """Convert a Hugging Face GPT-2 folder into OUT (the same as `import hf`)."""
    _import(hf_dir, out, None, attention, overwrite)


@click.group("export")
def export_group() -> None:
    """Export a llmbricks model directory to other tools' formats."""


@export_group.command("hf")
@click.argument("model_dir", type=click.Path(path_type=str))
@click.argument("out", type=click.Path(path_type=str))
@overwrite_option
def export_hf_command(model_dir: str, out: str, overwrite: bool) -> None:
    """Write MODEL_DIR as a Hugging Face folder (config.json + model.safetensors).

    GPT-2-shaped models (absolute positions, layernorm, gelu) export as GPT2LMHeadModel;
    Llama-shaped ones (rope, rmsnorm, swiglu or Gemma's geglu) as the family they were
    imported from, else the first family whose layout holds them.
    transformers.AutoModelForCausalLM.from_pretrained(OUT) loads the result.
    """
    from llmbricks.plugins.weights.families import export_any

    result = export_any(model_dir, out, overwrite=overwrite)
    c = result.hf_config
    layers = c.get("n_layer", c.get("num_hidden_layers"))
    dims = c.get("n_embd", c.get("hidden_size"))
    click.echo(f"exported {model_dir} to {out} ({result.architecture}: {layers} layers, "
               f"{dims} dims, vocab {c['vocab_size']}, "
               f"{'tied' if c['tie_word_embeddings'] else 'untied'} lm_head)")
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
