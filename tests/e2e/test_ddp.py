"""`torchrun --nproc_per_node 2 -m llmbricks train`: gloo DDP equals one process, global batch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import free_port
from tests.e2e.train_fixtures import events, tiny_config, train, train_env


@pytest.mark.slow
def test_two_ranks_match_one_process_with_the_same_global_batch(tmp_path):
    config = str(tiny_config(tmp_path, max_steps=12, eval_every=6, checkpoint_every=6))
    common = ["--set", "model.dropout=0.0"]
    single = train(config, "--out", "single", *common, "--set", "train.batch_size=4",
                   tmp_path=tmp_path)
    assert single.returncode == 0, single.stderr
    ddp = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
         "--master_addr=127.0.0.1", f"--master_port={free_port()}",
         "-m", "llmbricks", "train", config, "--out", "ddp", *common,
         "--set", "train.batch_size=2"],
        cwd=tmp_path, env=train_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    one = [e for e in events(tmp_path / "single") if e["event"] in ("step", "eval")]
    two = [e for e in events(tmp_path / "ddp") if e["event"] in ("step", "eval")]
    assert [e["step"] for e in one] == [e["step"] for e in two]
    for a, b in zip(one, two, strict=True):
        for key in ("loss", "val_loss", "train_loss"):
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-4), (a["step"], key)
        if a["event"] == "step":
            assert a["tokens"] == b["tokens"]  # global batch: 2 ranks x 2 windows = 4 windows
    start = events(tmp_path / "ddp")[0]
    assert start["world_size"] == 2 and start["tokens_per_step"] == 4 * 2 * 16
    # Rank 0 alone wrote the run: one start event, one set of checkpoints.
    assert sum(e["event"] == "start" for e in events(tmp_path / "ddp")) == 1
    assert sorted(p.name for p in (tmp_path / "ddp" / "checkpoints").iterdir()) == ["step-12", "step-6"]
