"""Moving a run between the driver and a Ray node: packing, unpacking, the task's own paths."""

from __future__ import annotations

import io
import sys
import tarfile
from pathlib import Path

import pytest

from llmbricks.core.ablation import ray_executor
from llmbricks.core.ablation.jobs import Job
from llmbricks.core.ablation.ray_transfer import pack, replace_with, unpack


def make_run(directory: Path) -> Path:
    (directory / "checkpoints" / "step-3").mkdir(parents=True)
    (directory / "checkpoints" / "step-3" / "model.pt").write_bytes(b"\x00weights")
    (directory / "metrics.jsonl").write_text('{"event": "start"}\n')
    return directory


def files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def test_pack_and_unpack_give_back_the_same_files(tmp_path):
    run = make_run(tmp_path / "run")
    unpack(pack(run), tmp_path / "copy")
    assert files(tmp_path / "copy") == files(run) and len(files(run)) == 2


def test_replace_with_leaves_exactly_the_packed_files(tmp_path):
    data = pack(make_run(tmp_path / "run"))
    target = tmp_path / "abl" / "seed-0"
    (target / "stale").mkdir(parents=True)
    replace_with(data, target)
    assert files(target) == files(tmp_path / "run")
    assert sorted(p.name for p in target.parent.iterdir()) == ["seed-0"]  # nothing half-unpacked


def test_unpack_refuses_a_name_outside_the_directory(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("../escaped")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(tarfile.OutsideDestinationError):
        unpack(buffer.getvalue(), tmp_path / "run")
    assert not (tmp_path / "escaped").exists()


def test_the_task_trains_in_its_own_directory_with_the_driver_paths_rewritten(tmp_path, monkeypatch):
    driver = tmp_path / "driver"
    config, run_dir = driver / "configs" / "v.yaml", driver / "runs" / "v" / "seed-1"
    job = Job("v", 1, 8, run_dir, run_dir.with_suffix(".json"),
              ["/driver/python", "-m", "llmbricks", "train", str(config), "--set", "seed=8",
               "--out", str(run_dir), "--resume"])
    seen: dict[str, object] = {}

    def fake_run_job(local: Job, threads: int) -> dict:
        seen["argv"], seen["threads"] = local.argv, threads
        seen["config"] = Path(local.argv[4]).read_text()
        seen["partial"] = files(local.run_dir)
        (local.run_dir / "metrics.jsonl").write_text("trained\n")
        local.run_dir.with_suffix(".log").write_text("$ train\n")
        return {**local.to_data(), "status": "completed"}

    monkeypatch.setattr(ray_executor, "run_job", fake_run_job)
    monkeypatch.setattr(ray_executor, "node_name", lambda: "abcd1234@10.0.0.2")
    record, packed, log = ray_executor.train_on_node(job, 2, "name: v\n",
                                                     pack(make_run(tmp_path / "partial")))
    argv = seen["argv"]
    assert argv[0] == sys.executable and argv[1:4] == ["-m", "llmbricks", "train"]
    assert argv[5:8] == ["--set", "seed=8", "--out"] and argv[-1] == "--resume"
    assert not argv[4].startswith(str(driver)) and argv[4].endswith("configs/v.yaml")
    assert argv[8].endswith("runs/v/seed-1") and not argv[8].startswith(str(driver))
    assert seen["config"] == "name: v\n" and seen["threads"] == 2
    assert seen["partial"] == files(tmp_path / "partial")  # unpacked before the run started
    assert record == {"variant": "v", "seed_index": 1, "seed": 8, "status": "completed",
                      "node": "abcd1234@10.0.0.2"}
    assert log == b"$ train\n"
    unpack(packed, tmp_path / "back")
    assert (tmp_path / "back" / "metrics.jsonl").read_text() == "trained\n"
    assert (tmp_path / "back" / "checkpoints" / "step-3" / "model.pt").is_file()
    assert not Path(argv[8]).exists()  # the node's temporary directory is gone
    assert not driver.exists()  # and nothing was written at the driver's paths
