"""Thin Hydra runners: each module exposes ``run(cfg) -> headline figure``; objects are built
from the config in :mod:`wsol_bench.tasks.factory`."""

from __future__ import annotations

from pathlib import Path


def run_dir(outside_hydra: str | None = None) -> Path:
    """The Hydra run (or multirun job) directory, where a task writes its outputs.

    Called outside a Hydra app (a test calling ``run(cfg)`` directly), returns
    ``outputs/<outside_hydra>`` when that name is given, else raises.
    """
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized() and outside_hydra is not None:
        return Path("outputs") / outside_hydra
    return Path(HydraConfig.get().runtime.output_dir)
