"""The ``ray`` executor: each run becomes a Ray task that trains it in a child process.

Ray (``pip install 'llmbricks[ray]'``) connects to an existing cluster with ``--address``
(``ray://host:10001`` or ``auto``), or starts a local one. Every node runs the same command as
the local executor, so the ablation directory must be on a filesystem all nodes share. Each
task reserves ``threads`` CPUs, so Ray places as many runs per node as its cores allow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import ConfigError
from .jobs import AblationInterrupted, Job, run_job


def run_on_ray(jobs: list[Job], *, workers: int, threads: int, address: str | None,
               finished: Callable[[int, dict[str, Any]], None]) -> None:
    """Submit every job (at most ``workers`` at a time) and report each as it completes."""
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
    remote = ray.remote(num_cpus=threads)(run_job)
    try:
        pending = list(enumerate(jobs))
        running: dict[Any, int] = {}
        while pending or running:
            while pending and len(running) < workers:
                index, job = pending.pop(0)
                running[remote.remote(job, threads)] = index
            done, _ = ray.wait(list(running), num_returns=1)
            for ref in done:
                finished(running.pop(ref), ray.get(ref))
    except KeyboardInterrupt:
        # Ctrl-C: the tasks end with Ray; their runs keep their checkpoints and resume on a rerun.
        raise AblationInterrupted() from None
    finally:
        if started_here:
            ray.shutdown()
