"""Thin Hydra runners: each module exposes ``run(cfg) -> headline figure``."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf


def run_dir() -> Path:
    """The Hydra run (or multirun job) directory, where a task writes its outputs."""
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def section(cfg: DictConfig, key: str, schema: type):
    """``cfg[key]`` as its typed dataclass (validated by the schema already)."""
    return OmegaConf.to_object(cfg[key]) if OmegaConf.is_config(cfg[key]) else schema(**cfg[key])
