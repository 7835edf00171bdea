"""Adapters and freeze policies in real runs: LoRA from a config, saved apart, frozen base."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from llmbricks.core.store.runs import load_run
from tests.e2e.train_fixtures import tiny_config, train

LORA = {"name": "lora", "r": 4, "alpha": 8}


def step_dir(run: Path, step: int) -> Path:
    return run / "checkpoints" / f"step-{step}"


def derived_config(base_config: Path, tmp_path: Path, name: str, **changes: object) -> Path:
    """The tiny config with ``changes`` applied per section (``model={...}``, ``train={...}``)."""
    data = yaml.safe_load(base_config.read_text(encoding="utf-8"))
    for section, values in changes.items():
        data[section].update(values)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("adapters")
    config = tiny_config(tmp, max_steps=10, eval_every=10, checkpoint_every=10, grad_accum=1)
    result = train(str(config), "--out", "base", tmp_path=tmp)
    assert result.returncode == 0, result.stderr
    return tmp, config


def test_a_lora_run_saves_the_adapter_apart_and_leaves_the_base_bit_identical(base_run):
    tmp, config = base_run
    lora = derived_config(config, tmp, "lora", model={"adapters": [LORA]},
                          train={"init_from": str(tmp / "base"), "max_steps": 6,
                                 "eval_every": 6, "checkpoint_every": 6})
    result = train(str(lora), "--out", "lora", tmp_path=tmp)
    assert result.returncode == 0, result.stderr
    base_weights = load_file(step_dir(tmp / "base", 10) / "model.safetensors")
    saved = step_dir(tmp / "lora", 6)
    weights = load_file(saved / "model.safetensors")
    adapter = load_file(saved / "adapter.safetensors")
    # The base file has the plain model's names and values: the base was frozen.
    assert weights.keys() == base_weights.keys()
    assert all(torch.equal(weights[k], base_weights[k]) for k in weights)
    # The adapter file holds only A and B, and B trained away from its zero init.
    assert adapter and all(k.endswith((".lora_A", ".lora_B")) for k in adapter)
    assert any(k.endswith(".lora_B") and v.abs().sum() > 0 for k, v in adapter.items())
    # The start event counts only the trainable (LoRA) numbers.
    start = next(line for line in (tmp / "lora" / "metrics.jsonl").read_text().splitlines()
                 if '"event": "start"' in line)
    trainable = sum(v.numel() for v in adapter.values())
    assert f'"params": {trainable},' in start


def test_a_lora_run_loads_generates_and_resumes(base_run, cli):
    tmp, config = base_run
    lora = derived_config(config, tmp, "lora2", model={"adapters": [LORA]},
                          train={"init_from": str(tmp / "base"), "max_steps": 4,
                                 "eval_every": 4, "checkpoint_every": 4})
    assert train(str(lora), "--out", "lora2", tmp_path=tmp).returncode == 0
    _, model, _ = load_run(tmp / "lora2")
    assert [a.name for a in model.adapters] == ["lora"]
    adapter = load_file(step_dir(tmp / "lora2", 4) / "adapter.safetensors")
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in adapter.items())
    generated = cli("generate", str(tmp / "lora2"), "--prompt", "the ", "--max-new-tokens", "5")
    assert generated.returncode == 0, generated.stderr
    longer = train(str(lora), "--out", "lora2", "--resume", "--set", "train.max_steps=8",
                   tmp_path=tmp)
    assert longer.returncode == 0, longer.stderr
    assert (step_dir(tmp / "lora2", 8) / "adapter.safetensors").is_file()


def test_last_block_policy_trains_only_the_last_block_norm_and_head(base_run):
    tmp, config = base_run
    frozen = derived_config(config, tmp, "frozen",
                            model={"head": {"name": "lm", "tie_weights": False}},  # a tied head
                            train={"init_from": str(tmp / "base"), "trainable": "last_block",
                                   "max_steps": 3, "eval_every": 3, "checkpoint_every": 3})
    assert train(str(frozen), "--out", "frozen", tmp_path=tmp).returncode == 0
    before = load_file(step_dir(tmp / "base", 10) / "model.safetensors")
    after = load_file(step_dir(tmp / "frozen", 3) / "model.safetensors")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    # (a tied head would train the shared embedding table: this head is untied)
    assert changed and all(k.startswith(("blocks.1.", "norm.")) for k in changed)
    assert any(k.startswith("blocks.1.") for k in changed) and "head.proj.weight" in after


def test_init_from_with_another_head_keeps_the_new_head_fresh(base_run):
    tmp, config = base_run
    untied = derived_config(config, tmp, "untied",
                            model={"head": {"name": "lm", "tie_weights": False}},
                            train={"init_from": str(tmp / "base"), "max_steps": 1,
                                   "eval_every": 1, "checkpoint_every": 1, "lr": 1e-9})
    result = train(str(untied), "--out", "untied", tmp_path=tmp)
    assert result.returncode == 0, result.stderr
    base = load_file(step_dir(tmp / "base", 10) / "model.safetensors")
    after = load_file(step_dir(tmp / "untied", 1) / "model.safetensors")
    embedding = next(k for k in base if k.startswith("embedding."))
    assert torch.allclose(after[embedding], base[embedding], atol=1e-6)  # loaded from the base
    assert not torch.allclose(after["head.proj.weight"], base[embedding], atol=1e-3)  # fresh


def test_model_merge_writes_a_plain_model_with_the_same_logits(base_run, cli):
    tmp, config = base_run
    lora = derived_config(config, tmp, "lora3", model={"adapters": [LORA]},
                          train={"init_from": str(tmp / "base"), "max_steps": 3,
                                 "eval_every": 3, "checkpoint_every": 3, "lr": 0.05})
    assert train(str(lora), "--out", "lora3", tmp_path=tmp).returncode == 0
    merged = cli("model", "merge", str(tmp / "lora3"), str(tmp / "merged"))
    assert merged.returncode == 0, merged.stderr
    assert "merged 1 adapter of" in merged.stdout
    _, adapted, _ = load_run(tmp / "lora3")
    config_after, plain, _ = load_run(tmp / "merged")
    assert config_after.model.adapters == [] and plain.adapters == []
    assert not any(k.endswith(("lora_A", "lora_B")) for k in plain.state_dict())
    ids = torch.randint(0, adapted.dims.vocab_size, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(plain(ids), adapted(ids), atol=1e-5, rtol=0)
        _, base, _ = load_run(tmp / "base")
        assert (plain(ids) - base(ids)).abs().max() > 1e-3  # the adapter's update is in there
    again = cli("model", "merge", str(tmp / "base"), str(tmp / "merged2"))
    assert again.returncode == 2 and "has no adapters to merge" in again.stderr
