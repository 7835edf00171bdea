"""Data parallelism under ``torchrun``: which rank this process is, and the few collectives used.

``torchrun --nproc_per_node N -m llmbricks train CONFIG`` sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``. Every rank trains the same model on its own shard of each global batch; DDP
averages the gradients, so a step equals one single-process step on the whole global batch.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import ConfigError


@dataclass(frozen=True)
class Distributed:
    """This process's place in a data-parallel job (a single process is rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes the run directory and logs."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the body first (it builds a cache); the other ranks then reuse its work."""
        if not self.is_main:
            self.barrier()
        yield
        if self.is_main:
            self.barrier()

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The average of ``value`` over ranks (itself when single-process)."""
        if not self.enabled:
            return value
        value = value.detach().clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        return value / self.world_size

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank when it is true on one (e.g. a Ctrl-C seen by rank 0)."""
        if not self.enabled:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())


def from_environment() -> Distributed:
    """Read torchrun's variables; start the process group when there is more than one rank."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend)
    return Distributed(rank=rank, world_size=world, local_rank=local)


def shutdown(context: Distributed) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()


def pick_device(name: str, context: Distributed) -> torch.device:
    """``auto`` is this rank's GPU when there is one, else the CPU; others must exist here."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", context.local_rank)
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"train.device: '{name}' is not a device; use auto, cpu, cuda, cuda:N "
                          "or mps") from None
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if not available.get(device.type, True):
        raise ConfigError(f"train.device: {device.type} is not available on this machine "
                          f"(torch {torch.__version__}); use auto or cpu")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", context.local_rank)
    return device


def pick_precision(requested: str, device: torch.device) -> str:
    """``auto`` is bf16 where the device runs it faster, else fp32; others are kept.

    Measured on this project's CPU machines (docs/training.md): bf16 autocast trains the
    quickstart about 20% slower than fp32 (16.2k vs 20.0k tokens/s), so the CPU keeps fp32; a
    CUDA device with native bf16 (Ampere and later) runs it faster.
    """
    if requested != "auto":
        return requested
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"
