"""`llmbricks import gpt2` and `llmbricks export hf` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from llmbricks.core.build import build_model
from llmbricks.core.config import load_config
from llmbricks.core.store.model_dir import save_model_dir
from tests.conftest import run_cli

SHAPE = {"n_layer": 2, "n_embd": 64, "n_head": 4, "n_positions": 128, "vocab_size": 50257}


def assert_one_line_error(result, expected: str, code: int) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and expected in lines[0], lines[0]


@pytest.fixture(scope="module")
def hf(tmp_path_factory) -> tuple[Path, GPT2LMHeadModel]:
    directory = tmp_path_factory.mktemp("hf") / "gpt2"
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(**SHAPE)).eval()
    model.save_pretrained(directory, safe_serialization=True)
    return directory, model


@pytest.mark.slow
@pytest.mark.data_files("gpt2.tiktoken")
def test_import_summary_export_round_trip(hf, tmp_path):
    out, back = tmp_path / "model", tmp_path / "hf-out"
    result = run_cli("import", "gpt2", str(hf[0]), str(out))
    assert result.returncode == 0, result.stderr
    assert "imported GPT-2" in result.stdout and "2 layers" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "model.safetensors", "tokenizer"]

    summary = run_cli("model", "summary", str(out / "config.yaml"), "--json")
    assert summary.returncode == 0, summary.stderr
    data = json.loads(summary.stdout)
    assert data["total"] == sum(p.numel() for p in hf[1].parameters()) and data["head_tied"]

    result = run_cli("export", "hf", str(out), str(back))
    assert result.returncode == 0, result.stderr
    assert "exported" in result.stdout and "tied lm_head" in result.stdout
    model = GPT2LMHeadModel.from_pretrained(back).eval()
    ids = torch.randint(0, 50257, (2, 30), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, hf[1](ids).logits, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_cli_errors_are_one_line(hf, tmp_path):
    assert_one_line_error(run_cli("import", "gpt2", str(tmp_path / "nowhere"), str(tmp_path / "o")),
                          "does not exist", 1)
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "x").write_text("x")
    assert_one_line_error(run_cli("import", "gpt2", str(hf[0]), str(taken)),
                          "already exists and is not empty", 1)

    odd = tmp_path / "odd"
    odd.mkdir()
    config = json.loads((hf[0] / "config.json").read_text())
    (odd / "config.json").write_text(json.dumps({**config, "scale_attn_by_inverse_layer_idx": True}))
    assert_one_line_error(run_cli("import", "gpt2", str(odd), str(tmp_path / "o")),
                          "config.json: scale_attn_by_inverse_layer_idx=true is not supported", 2)

    cfg = load_config({"model": {"vocab_size": 97, "context_length": 16, "emb_dim": 32,
                                 "n_layers": 1, "n_heads": 4, "positional": "none"}})
    save_model_dir(tmp_path / "nope", cfg, build_model(cfg))
    assert_one_line_error(run_cli("export", "hf", str(tmp_path / "nope"), str(tmp_path / "hf")),
                          "model.positional: 'none' cannot be exported to GPT-2 (it needs 'absolute')", 2)
    assert not (tmp_path / "hf").exists()
    assert_one_line_error(run_cli("export", "hf", str(tmp_path), str(tmp_path / "hf")),
                          "is not a llmbricks model directory: config.yaml is missing", 1)


def test_verbs_are_listed_in_help():
    from click.testing import CliRunner

    from llmbricks.cli.main import cli

    result = CliRunner().invoke(cli, ["import", "--help"])
    assert result.exit_code == 0 and "gpt2" in result.output
    result = CliRunner().invoke(cli, ["export", "hf", "--help"])
    assert result.exit_code == 0 and "--overwrite" in result.output
