"""The ``ray`` executor: each run becomes a Ray task that trains it on some node of a cluster.

Ray (``pip install 'llmbricks[ray]'``) connects to an existing cluster with ``--address``
(``HOST:6379``, ``ray://host:10001`` or ``auto``), or starts a local one. No filesystem is
assumed shared between the nodes: a task trains its run in a node-local temporary directory and
returns the run directory and its log, which the driver writes where the local executor would
(``ABL/runs/VARIANT/seed-K/`` and ``seed-K.log``); a resumed run's partial directory travels the
other way first. Each record names the node that trained the run. Tasks are spread over the nodes
and each reserves ``threads`` CPUs, so Ray places as many runs per node as its cores allow.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .jobs import AblationInterrupted, Job, queue_first, run_job
from .ray_transfer import pack, replace_with, unpack

#: What a task returns: the run's record, its run directory packed (None if none was made), its log.
TaskResult = tuple[dict[str, Any], bytes | None, bytes]


def run_on_ray(jobs: list[Job], *, workers: int, threads: int, address: str | None,
               finished: Callable[[int, dict[str, Any]], None],
               more: Callable[[], list[Job]] | None = None) -> None:
    """Submit every job (at most ``workers`` at a time) and report each as it completes; the
    jobs ``more`` returns after each are submitted before those still waiting."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray: pip install 'llmbricks[ray]'") from None

    started_here = not ray.is_initialized()
    if started_here:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers * threads, include_dashboard=False, log_to_driver=False)
    remote = ray.remote(num_cpus=threads, scheduling_strategy="SPREAD")(train_on_node)
    try:
        pending = list(enumerate(jobs))
        running: dict[Any, int] = {}
        while pending or running:
            while pending and len(running) < workers:
                index, job = pending.pop(0)
                partial = pack(job.run_dir) if "--resume" in job.argv else None
                ref = remote.remote(job, threads, job.config.read_text(encoding="utf-8"), partial)
                running[ref] = index
            done, _ = ray.wait(list(running), num_returns=1)
            for ref in done:
                index = running.pop(ref)
                finished(index, _write_back(jobs[index], ref))
                if more is not None:
                    queue_first(more(), jobs, pending)
    except KeyboardInterrupt:
        # Ctrl-C: the tasks end with Ray. Their node-local progress is lost; a rerun resumes each
        # from what the driver holds (nothing, or the partial run it shipped).
        raise AblationInterrupted() from None
    finally:
        if started_here:
            ray.shutdown()


def _write_back(job: Job, ref: Any) -> dict[str, Any]:
    """Write a finished task's run directory and log on the driver; return the run's record."""
    import ray

    log = job.run_dir.with_suffix(".log")
    log.parent.mkdir(parents=True, exist_ok=True)  # the record goes beside it, even for a failure
    try:
        record, run, output = ray.get(ref)
    except ray.exceptions.RayError as exc:  # the task itself died (its node or its worker)
        error = f"ray: {type(exc).__name__}: {str(exc).strip().splitlines()[0]}"[:500]
        return {**job.to_data(), "status": "failed", "error": error, "wall_s": None,
                "returncode": None, "log": log.name, "node": None}
    if run is not None:
        replace_with(run, job.run_dir)
    with open(log, "ab") as out:  # appended, as the local executor does over resumes
        out.write(output)
    return record


def train_on_node(job: Job, threads: int, config_text: str, partial: bytes | None) -> TaskResult:
    """The Ray task: train ``job`` in a temporary directory of this node and return it.

    ``job.argv`` holds the driver's paths (its config file, ``--out``) and interpreter, which
    need not exist here: they are rewritten to this node's before the run starts.
    """
    with tempfile.TemporaryDirectory(prefix="llmbricks-ablate-") as tmp:
        config = Path(tmp, "configs", job.config.name)
        config.parent.mkdir(parents=True)
        config.write_text(config_text, encoding="utf-8")
        run_dir = Path(tmp, "runs", job.run_dir.parent.name, job.run_dir.name)
        run_dir.parent.mkdir(parents=True)
        if partial is not None:
            unpack(partial, run_dir)
        here = {str(job.config): str(config), str(job.run_dir): str(run_dir)}
        argv = [sys.executable, *(here.get(arg, arg) for arg in job.argv[1:])]
        local = replace(job, run_dir=run_dir, record=run_dir.with_suffix(".json"), argv=argv)
        record = {**run_job(local, threads), "node": node_name()}
        packed = pack(run_dir) if run_dir.is_dir() else None
        return record, packed, run_dir.with_suffix(".log").read_bytes()


def node_name() -> str:
    """This Ray node as ``ID8@IP``: the IP alone cannot tell apart two nodes of one machine."""
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    return f"{node_id[:8]}@{ray.util.get_node_ip_address()}"
