"""train.precision: auto picks bf16 only where the device runs it faster, and the run records it."""

from __future__ import annotations

import json

import torch

from llmbricks.core.train.distributed import pick_precision
from tests.e2e.bad_inputs import invoke
from tests.e2e.train_fixtures import tiny_config


def test_auto_keeps_fp32_on_the_cpu_and_explicit_choices_stand():
    cpu = torch.device("cpu")
    assert pick_precision("auto", cpu) == "fp32"  # measured slower in bf16 here (training.md)
    assert pick_precision("bf16", cpu) == "bf16" and pick_precision("fp32", cpu) == "fp32"


def test_auto_takes_bf16_on_a_gpu_with_native_bf16(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert pick_precision("auto", torch.device("cuda", 0)) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert pick_precision("auto", torch.device("cuda", 0)) == "fp32"


def test_the_manifest_records_the_device_and_the_precision_chosen(tmp_path):
    config = tiny_config(tmp_path, max_steps=2, eval_every=2, precision="auto")
    done = invoke("train", str(config), "--out", str(tmp_path / "run"),
                  env={"LLMBRICKS_CACHE_DIR": str(tmp_path / "cache")})
    assert done.code == 0, done.stderr
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert (manifest["device"], manifest["precision"]) == ("cpu", "fp32")
