"""`llmbricks import hf` from a folder and from an offline Hub cache laid out by the test; `export hf`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import transformers

from tests.e2e.bad_inputs import assert_clean_failure, invoke
from tests.plugins.test_llama_hf import ragged_batch, save_family

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def llama_folder(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    folder = tmp_path_factory.mktemp("hf") / "tiny-llama"
    return folder, save_family(folder, "Llama")


def lay_out_hub_cache(home: Path, repo: str, folder: Path) -> Path:
    """The Hub cache ``huggingface_hub`` writes: refs/main names a snapshot holding the files."""
    root = home / "hub" / ("models--" + repo.replace("/", "--"))
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(COMMIT)
    shutil.copytree(folder, root / "snapshots" / COMMIT)
    return root


def test_import_from_a_folder_then_export_round_trips(llama_folder, tmp_path):
    folder, hf_model = llama_folder
    done = invoke("import", "hf", str(folder), str(tmp_path / "ours"))
    assert done.code == 0, done.stderr
    assert done.stdout.startswith(f"imported Llama from {folder} into {tmp_path / 'ours'}: ")
    assert "2 layers, 64 dims, 4 heads (2 key/value), context 96, vocab 151" in done.stdout
    exported = invoke("export", "hf", str(tmp_path / "ours"), str(tmp_path / "back"))
    assert exported.code == 0, exported.stderr
    assert "(LlamaForCausalLM: 2 layers, 64 dims, vocab 151, untied lm_head)" in exported.stdout
    again = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "back").eval()
    ids = ragged_batch()[0]
    with torch.no_grad():
        assert torch.equal(again(ids).logits, hf_model(ids).logits)


def test_import_from_an_offline_hub_cache(llama_folder, tmp_path):
    folder, _ = llama_folder
    lay_out_hub_cache(tmp_path / "hf-home", "acme/tiny-llama", folder)
    env = {"HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_OFFLINE": "1"}
    done = invoke("import", "hf", "acme/tiny-llama", str(tmp_path / "ours"), env=env, subprocess=True)
    assert done.code == 0, done.stderr
    assert "imported Llama from acme/tiny-llama" in done.stdout
    assert json.loads((tmp_path / "ours" / "hf_config.json").read_text())["model_type"] == "llama"


def test_a_repo_not_in_the_offline_cache_says_what_to_download(tmp_path):
    env = {"HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_OFFLINE": "1"}
    done = invoke("import", "hf", "acme/missing", str(tmp_path / "ours"), env=env, subprocess=True)
    assert_clean_failure(done, 1, "acme/missing is not in the Hugging Face cache",
                         str(tmp_path / "hf-home"), "hf download acme/missing")
    assert not (tmp_path / "ours").exists()


@pytest.mark.parametrize("change,code,words", [
    ({"model_type": "falcon"}, 2, ("model_type \"falcon\" is not supported",)),
    ({"hidden_act": "relu"}, 2, ("hidden_act \"relu\" is not supported",)),
    ({"num_hidden_layers": 3}, 1, ("model.layers.2.", "missing")),
])
def test_a_folder_llmbricks_cannot_import_is_one_line(llama_folder, tmp_path, change, code, words):
    folder, _ = llama_folder
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, **change}))
    done = invoke("import", "hf", str(copy), str(tmp_path / "ours"))
    assert_clean_failure(done, code, *words)
    assert not (tmp_path / "ours").exists()


def test_a_local_path_that_is_neither_folder_nor_repo_id(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"x")
    done = invoke("import", "hf", str(tmp_path / "weights.bin"), str(tmp_path / "ours"))
    assert_clean_failure(done, 1, "is a file; give the folder that holds config.json")
    done = invoke("import", "hf", "not a repo", str(tmp_path / "ours"))
    assert_clean_failure(done, 1, "not a repo does not exist", "a Hub repo id (owner/name)")


def test_export_of_a_model_no_family_fits_names_both_reasons(tmp_path):
    from llmbricks.core.build import build_model
    from llmbricks.core.config import load_config
    from llmbricks.core.store.model_dir import save_model_dir

    config = load_config({"model": {"vocab_size": 50, "context_length": 16, "emb_dim": 32,
                                    "n_layers": 1, "n_heads": 4, "positional": "alibi",
                                    "norm": "rmsnorm"}})
    save_model_dir(tmp_path / "model", config, build_model(config))
    done = invoke("export", "hf", str(tmp_path / "model"), str(tmp_path / "out"))
    assert_clean_failure(done, 2, "fits no Hugging Face family", "GPT-2: model.positional: 'alibi'",
                         "Llama: model.positional: 'alibi'")



@pytest.fixture(scope="module")
def llama_with_tokenizer(tmp_path_factory) -> Path:
    """A tiny Llama whose folder holds its own tokenizer.json and tokenizer_config.json."""
    from tests.plugins.test_hf_tokenizer import make_tiny_llama_folder

    return make_tiny_llama_folder(tmp_path_factory.mktemp("hf-tok") / "tiny-llama")


def test_the_folder_tokenizer_comes_along_and_generate_needs_nothing_else(llama_with_tokenizer, tmp_path):
    done = invoke("import", "hf", str(llama_with_tokenizer), str(tmp_path / "ours"))
    assert done.code == 0, done.stderr
    assert (tmp_path / "ours" / "tokenizer" / "hf_tokenizer.json").is_file()
    ours = invoke("generate", str(tmp_path / "ours"), "--prompt", "The sea", "-n", "12")
    assert ours.code == 0, ours.stderr
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(llama_with_tokenizer).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(llama_with_tokenizer)
    prompt = tokenizer("The sea", add_special_tokens=False, return_tensors="pt")["input_ids"]
    theirs = hf_model.generate(prompt, max_new_tokens=12, min_new_tokens=12, do_sample=False,
                               pad_token_id=0)
    assert ours.stdout.rstrip("\n") == tokenizer.decode(theirs[0])


def test_a_lora_finetune_of_an_import_merges_and_exports_to_transformers(llama_with_tokenizer, tmp_path):
    invoke("import", "hf", str(llama_with_tokenizer), str(tmp_path / "ours"))
    (tmp_path / "corpus.txt").write_text("The sea is calm and the ship sails on. " * 400)
    trained = invoke("train", str(tmp_path / "ours"),
                     "--set", f"data.source={{name: text, path: {tmp_path / 'corpus.txt'}}}",
                     "--set", "model.adapters=[{name: lora, r: 4}]", "--set", "train.max_steps=12",
                     "--set", "train.batch_size=4", "--set", "model.context_length=32",
                     "--set", "train.eval_every=6", "--set", "train.warmup_steps=0",
                     "--set", "train.lr=0.01", "--set", "train.sample_prompt=null",
                     "--out", str(tmp_path / "run"))
    assert trained.code == 0, trained.stderr
    evals = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [e["val_loss"] for e in evals if e["event"] == "eval"]
    assert len(losses) == 2 and losses[-1] < losses[0]
    assert invoke("model", "merge", str(tmp_path / "run"), str(tmp_path / "merged")).code == 0
    assert invoke("export", "hf", str(tmp_path / "merged"), str(tmp_path / "back")).code == 0
    from llmbricks.core.store.model_dir import load_model_dir

    _, merged, tokenizer = load_model_dir(tmp_path / "merged")
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "back").eval()
    their_tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "back")
    text = "The ship sails on the calm sea"
    ids = tokenizer.encode(text)
    assert ids == their_tokenizer(text, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        batch = torch.tensor([ids])
        assert (theirs(batch).logits - merged(batch)).abs().max().item() <= 1e-4


@pytest.mark.parametrize("change,words", [
    ({"embedding": {"name": "token", "scale": "sqrt_dim"}}, ("model.embedding.scale", "sqrt_dim")),
    ({"head": {"name": "lm", "tie_weights": False, "softcap": 30.0}}, ("model.head.softcap",)),
    ({"norm": {"name": "rmsnorm", "offset": 1.0}}, ("model.norm.offset",)),
    ({"block": {"name": "gpt", "placement": "sandwich"}},
     ("model.feedforward: 'swiglu' cannot be exported to Gemma's layout", "needs 'geglu'")),
    ({"local_layers": [0], "local_attention": {"name": "sdpa", "out_bias": False, "window": 4}},
     ("model.local_attention: local layers export only as Gemma",)),
    ({"attention": {"name": "sdpa", "out_bias": False, "softcap": 50.0}}, ("model.attention.softcap",)),
    ({"feedforward": "geglu"}, ("model.feedforward: 'geglu'",)),
])
def test_export_refuses_what_the_layout_cannot_hold(tmp_path, change, words):
    """A Llama-shaped model with one Gemma-style part is refused, never written as another model."""
    from llmbricks.core.build import build_model
    from llmbricks.core.config import load_config
    from llmbricks.core.store.model_dir import save_model_dir

    model = {"vocab_size": 50, "context_length": 16, "emb_dim": 32, "n_layers": 1, "n_heads": 4,
             "positional": "rope", "norm": "rmsnorm", "feedforward": "swiglu",
             "attention": {"name": "sdpa", "out_bias": False},
             "head": {"name": "lm", "tie_weights": False}}
    config = load_config({"model": {**model, **change}})
    save_model_dir(tmp_path / "model", config, build_model(config))
    done = invoke("export", "hf", str(tmp_path / "model"), str(tmp_path / "out"))
    assert_clean_failure(done, 2, *words)
    assert not (tmp_path / "out").exists()


def test_classify_with_a_new_head_and_ablate_a_component_of_an_import(llama_with_tokenizer, tmp_path):
    """Point 4: an import is a model like any other: a classifier head trains on it, and an
    ablation swaps one of its components (the attention window) while starting from its weights."""
    assert invoke("import", "hf", str(llama_with_tokenizer), str(tmp_path / "ours")).code == 0
    rows = ["text,label"] + [f"the sea is calm {i},sea" if i % 2 else f"the hill is cold {i},land"
                             for i in range(60)]
    (tmp_path / "rows.csv").write_text("\n".join(rows) + "\n")
    fast = ["--set", "train.batch_size=8", "--set", "train.warmup_steps=0", "--set", "train.lr=1e-3",
            "--set", "train.sample_prompt=null", "--set", "train.loggers=[jsonl]"]
    trained = invoke("train", str(tmp_path / "ours"), "--set", "train.trainer=classify",
                     "--set", "model.head={name: classification, num_classes: 2}",
                     "--set", f"data.source={{name: labeled_text, path: {tmp_path / 'rows.csv'}}}",
                     "--set", "train.max_steps=6", "--set", "train.eval_every=6", *fast,
                     "--out", str(tmp_path / "classifier"))
    assert trained.code == 0, trained.stderr
    labels = invoke("classify", str(tmp_path / "classifier"), "the sea is calm")
    assert labels.code == 0 and labels.stdout.split()[0] in ("sea", "land"), labels.stderr
    (tmp_path / "corpus.txt").write_text("The sea is calm and the ship sails on. " * 200)
    shutil.copy(tmp_path / "ours" / "config.yaml", tmp_path / "import.yaml")
    ablated = invoke("ablate", "run", str(tmp_path / "import.yaml"),
                     "--grid", "model.attention.window=null,8", "--seeds", "1",
                     "--set", f"train.init_from={tmp_path / 'ours'}",
                     "--set", f"data.source={{name: text, path: {tmp_path / 'corpus.txt'}}}",
                     "--set", "train.max_steps=3", "--set", "train.eval_every=3",
                     "--set", "model.context_length=32", *fast, "--out", str(tmp_path / "ablation"))
    assert ablated.code == 0, ablated.stderr
    summary = (tmp_path / "ablation" / "summary.csv").read_text()
    assert "window=null" in summary and "window=8" in summary
