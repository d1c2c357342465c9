"""This process's place in a torchrun job, used by localisation and training alike.

``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` come from the environment (torchrun, or the
ranks :mod:`wsol_bench.pipeline.launch` starts). A single process is rank 0 of 1 and
every helper here is then a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Rank, world size, local rank and the torch device of this process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def owns(self, batch: int) -> bool:
        """Whether global batch ``batch`` is this rank's (batches are dealt round-robin)."""
        return batch % self.world_size == self.rank


def env_ranks() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from the environment (``(0, 1, 0)`` when unset)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def init_distributed(device: torch.device) -> DistInfo:
    """Join the job's process group when ``WORLD_SIZE > 1`` (NCCL on CUDA, Gloo on the CPU).

    On CUDA each process uses ``cuda:LOCAL_RANK``. A single process returns ``device`` as is.
    """
    rank, world, local = env_ranks()
    if world <= 1:
        return DistInfo(device=device)
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=device)


def shutdown_distributed() -> None:
    """Leave the process group if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's ``obj`` on every rank (identity in a single process)."""
    if not info.distributed:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()
