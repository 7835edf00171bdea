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
    assert done.stdout.startswith(f"imported llama from {folder} into {tmp_path / 'ours'}: ")
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
    assert "imported llama from acme/tiny-llama" in done.stdout
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
    assert_clean_failure(done, 1, "neither a folder nor a Hub repo id")


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

