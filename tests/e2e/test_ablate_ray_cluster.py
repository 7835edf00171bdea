"""`ablate --executor ray --address` on a real two-node Ray cluster started on this machine.

The two nodes share nothing on purpose: each has its own Ray temp dir (Ray 2.60 accepts a worker
node's ``--temp-dir`` apart from the head's; the node then names its session after the head's),
each task trains in a temporary directory of its node, and the driver must get every run
directory and log back into the ablation directory.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmbricks.core.ablation.estimate import threads_per_run
from tests.e2e.test_ablate import FAST, records
from tests.e2e.train_fixtures import tiny_config, train_env

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not sys.platform.startswith("linux"),
                                 reason="the nodes' processes are found by session in /proc")]

RAY = Path(sys.executable).with_name("ray")
JOBS = 2
NODE = re.compile(r"[0-9a-f]{8}@[0-9a-f.:]+")  # a Ray node: its id's first 8 hex digits @ its IP


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def ray_env(tmp_path: Path) -> dict[str, str]:
    """The nodes' and the driver's environment, the same whatever the caller's shell holds.

    No outside ``RAY_*`` variable (``RAY_ADDRESS`` would point the driver elsewhere), and token
    authentication off: Ray 2.60 turns it on by itself when ``~/.ray/auth_token`` exists (a local
    ``ray.init()`` writes one), which would make the test depend on the user's home.
    """
    env = {k: v for k, v in train_env(tmp_path).items() if not k.startswith("RAY_")}
    return {**env, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def start_node(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``ray start --block ARGS`` in a session of its own; return once it says it is up."""
    with open(log, "wb") as out:
        process = subprocess.Popen([str(RAY), "start", "--block", *args], env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while "block forever" not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_node(process)
            raise AssertionError(f"ray start {' '.join(args)} failed:\n"
                                 f"{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)
    return process


def stop_node(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL every process of the node's session: ``ray start``, GCS, raylet, workers.

    Not ``ray stop --force``: that kills every Ray process of the machine by name, another
    test's or user's cluster included. Two passes catch a worker started during the first.
    """
    for _ in range(2):
        for pid in [int(name) for name in os.listdir("/proc") if name.isdigit()]:
            try:
                if os.getsid(pid) == process.pid:
                    os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.2)
    process.wait(timeout=30)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[str]:
    """A head and a worker node on this machine, each with its own temp dir; yields the address.

    Nothing leaves the machine, though Ray on Linux binds to its own non-loopback address (it
    replaces 127.0.0.1 by it, even given ``--node-ip-address=127.0.0.1``).
    """
    pytest.importorskip("ray", reason="the ray extra (pip install 'llmbricks[ray]') is not installed")
    env = ray_env(tmp_path)
    port = free_port()
    # Short temp dirs: Ray's unix sockets live under them, and a socket path has at most 107 bytes.
    temps = [Path(tempfile.mkdtemp(prefix=f"ray-{name}-", dir="/tmp")) for name in ("a", "b")]
    # Each node has the CPUs of one task (what --jobs 2 reserves), so two runs at once must take
    # the two nodes.
    common = [f"--num-cpus={threads_per_run(JOBS)}",
              "--object-store-memory=100000000", "--disable-usage-stats"]
    nodes: list[subprocess.Popen[bytes]] = []
    try:
        nodes.append(start_node(["--head", f"--port={port}", "--include-dashboard=false",
                                 f"--ray-client-server-port={free_port()}",
                                 '--resources={"head_node": 1}', f"--temp-dir={temps[0]}",
                                 f"--dashboard-agent-listen-port={free_port()}", *common],
                                env, tmp_path / "head.out"))
        nodes.append(start_node([f"--address=127.0.0.1:{port}", '--resources={"worker_node": 1}',
                                 f"--temp-dir={temps[1]}",
                                 f"--dashboard-agent-listen-port={free_port()}", *common],
                                env, tmp_path / "worker.out"))
        yield f"127.0.0.1:{port}"
    finally:
        for node in reversed(nodes):
            stop_node(node)
        for temp in temps:
            shutil.rmtree(temp, ignore_errors=True)


def ablate(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "llmbricks", "ablate", *args], cwd=tmp_path,
                          env={**ray_env(tmp_path), "COLUMNS": "200"}, capture_output=True,
                          text=True, timeout=300)


def test_an_ablation_trains_on_two_nodes_and_every_run_comes_back_to_the_driver(tmp_path, cluster):
    config = tiny_config(tmp_path, **FAST)
    args = [str(config), "--grid", "model.norm=layernorm,rmsnorm", "--executor", "ray",
            "--address", cluster, "--jobs", str(JOBS), "--out", "abl"]
    result = ablate(args, tmp_path)
    assert result.returncode == 0, result.stderr + result.stdout
    abl = tmp_path / "abl"
    found = records(abl)
    assert set(found) == {"norm=layernorm/seed-0", "norm=rmsnorm/seed-0"}
    assert all(r["status"] == "completed" for r in found.values())
    with open(abl / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    nodes = {row["node"] for row in rows}
    assert len(nodes) == 2 and all(NODE.fullmatch(node) for node in nodes), nodes
    for row in rows:  # trained in a node's temporary directory, written back on the driver
        run = abl / row["run_dir"]
        assert (run / "metrics.jsonl").is_file() and (run / "config.yaml").is_file()
        assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-3", "step-6"]
        assert run.with_suffix(".log").read_text().startswith("$ ")
    assert (abl / "report.md").is_file() and (abl / "curves.png").is_file()
    assert not list(abl.glob("runs/*/.*"))  # no half-unpacked directory left

    # A run that lost its record and last checkpoint resumes on a node from the one before: the
    # driver ships the partial run directory, and gets the finished one back.
    run = abl / "runs" / "norm=rmsnorm" / "seed-0"
    run.with_suffix(".json").unlink()
    shutil.rmtree(run / "checkpoints" / "step-6")
    again = ablate(args, tmp_path)
    assert again.returncode == 0, again.stderr + again.stdout
    assert "1 to train, 1 already done" in again.stdout
    events = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    resumes = [e for e in events if e["event"] == "resume"]
    assert len(resumes) == 1 and resumes[0]["step"] == 3
    assert events[-1]["event"] == "end" and events[-1]["status"] == "completed"
    assert events[-1]["step"] == 6 and (run / "checkpoints" / "step-6").is_dir()
    log = run.with_suffix(".log").read_text()
    assert log.count("$ ") == 2 and "--resume" in log  # the second session appended
    assert NODE.fullmatch(records(abl)["norm=rmsnorm/seed-0"]["node"])
