"""How a localisation run computes (``engine``) and behaves (``run``), and the ``auto`` rules.

Neither section changes a run's figures, except ``engine.fold_batchnorm`` (a verified copy
of the model with BatchNorms folded into convolutions) and ``engine.pointwise_matmul`` (on the
CPU, a copy with 1 x 1 convolutions as matrix products): maps equal to float rounding, so
both key the saliency cache and the run's manifest; and ``engine.precision=bfloat16``
(saliency under bfloat16 autocast: maps and classes change, docs/benchmarks.md), which keys
them too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from wsol_bench.registry import require

Auto = Literal["auto"]

#: bytes of RAM planned per CPU rank (the default run's peak is below this, docs/benchmarks.md)
RANK_MEMORY = int(2.5 * 2**30)


@dataclass(frozen=True)
class EngineSettings:
    """The ``engine`` section: batching, workers, the saliency cache, the model copy."""

    batch_images: int = 1  # images per saliency call: the unit of sharding and resume (1 is fastest on a CPU)
    segmentation_workers: int | Auto = "auto"  # processes segmenting beside saliency; auto: 0 (CPU), free cores (GPU)
    loader_workers: int | Auto = "auto"  # processes decoding images per rank; auto: 0 on a CPU, 2 on a GPU
    cache: bool = True  # keep saliency results on disk, keyed by model, method, parameters, crops, image bytes
    cache_dir: str = "outputs/.saliency_cache"
    fold_batchnorm: bool = True  # saliency on a copy with BatchNorms folded into convolutions (same logits)
    pointwise_matmul: bool = True  # on the CPU, 1 x 1 convolutions as matrix products (a copy; same maps)
    precision: Literal["float32", "bfloat16"] = "float32"  # saliency's forward and backward (bfloat16: autocast)

    def __post_init__(self) -> None:
        require(self.batch_images >= 1, "batch_images", self.batch_images, ">= 1")
        for key in ("segmentation_workers", "loader_workers"):
            value = getattr(self, key)
            require(value == "auto" or value >= 0, key, value, "auto or an integer >= 0")
        require(bool(self.cache_dir), "cache_dir", self.cache_dir, "a folder")
        require(self.precision in ("float32", "bfloat16"), "precision", self.precision, "float32 or bfloat16")

    def resolved_segmentation_workers(self, device: torch.device, world_size: int) -> int:
        """``segmentation_workers``, ``auto`` resolved: 0 on the CPU (the ranks keep every core
        busy); on a GPU the cores each GPU rank leaves free."""
        if self.segmentation_workers != "auto":
            return int(self.segmentation_workers)
        return 0 if device.type != "cuda" else max(0, usable_cores() // max(1, world_size) - 1)

    def resolved_loader_workers(self, device: torch.device) -> int:
        """``loader_workers``, ``auto`` resolved: 0 on the CPU (decoding is about 1% of a rank's
        time and a worker costs a core while it starts and about 0.5 GB); 2 on a GPU."""
        if self.loader_workers != "auto":
            return int(self.loader_workers)
        return 2 if device.type == "cuda" else 0


@dataclass(frozen=True)
class RunSettings:
    """The ``run`` section: resume, figures, score-map export, ranks, progress."""

    resume: bool = False  # continue the run in hydra.run.dir (same settings, or it is refused)
    figures: int = 8  # figures for the first N images
    save_maps: bool = False  # write scoremaps/<image_id>.npy + metadata (wsolevaluation's layout)
    processes: int | Auto = "auto"  # ranks: auto = one per core (CPU) or GPU, capped by batches and memory
    progress: bool = True  # one progress bar for the run

    def __post_init__(self) -> None:
        require(self.figures >= 0, "figures", self.figures, ">= 0")
        require(self.processes == "auto" or self.processes >= 1, "processes", self.processes, "auto or an integer >= 1")


def usable_cores() -> int:
    """CPU cores this process may use: its affinity mask, lowered by a cgroup v2 CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def available_memory() -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` in bytes (None where unknown)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def world_size_for(processes: int | Auto, device: torch.device, batches: int) -> tuple[int, str]:
    """How many ranks to start for ``batches`` global batches, and why.

    Never more than the batches, nor (on a CPU) the usable cores or the memory for
    :data:`RANK_MEMORY` each; ``auto`` takes all of that, or one rank per visible GPU.
    """
    limits = {"batches": max(1, batches)}
    if device.type == "cuda":
        limits["GPUs"] = max(1, torch.cuda.device_count())
    else:
        limits["cores"] = usable_cores()
        memory = available_memory()
        if memory is not None:
            limits["memory"] = max(1, memory // RANK_MEMORY)
    wanted = min(limits.values()) if processes == "auto" else int(processes)
    world = min(wanted, *limits.values())
    reason = ", ".join(f"{k} {v}" for k, v in limits.items())
    return world, reason
