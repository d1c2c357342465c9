"""Thin Hydra runners: each module exposes ``run(cfg) -> headline figure``; objects are built
from the config in :mod:`wsol_bench.tasks.factory`.

Hydra's own files (``.hydra/config.yaml``, ``hydra.yaml``, ``overrides.yaml``) are written by
:func:`write_hydra_files` once a task has checked its settings and its output folder
(``hydra.output_subdir`` is null), so a refused run leaves nothing behind; a resumed run
writes them beside the original's, into ``.hydra-resume-<time>``.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

from omegaconf import DictConfig

HYDRA_DIR = ".hydra"


def run_dir(outside_hydra: str | None = None) -> Path:
    """The Hydra run (or multirun job) directory, where a task writes its outputs.

    Called outside a Hydra app (a test calling ``run(cfg)`` directly), returns
    ``outputs/<outside_hydra>`` when that name is given, else raises.
    """
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized() and outside_hydra is not None:
        return Path("outputs") / outside_hydra
    return Path(HydraConfig.get().runtime.output_dir)


def is_rank_zero() -> bool:
    """Rank 0 of a torchrun job, or a plain process."""
    return os.environ.get("RANK", "0") == "0"


def check_output_dir(out: Path, resume: bool = False) -> None:
    """A new run refuses a folder that already holds another run (its Hydra files)."""
    if not resume and (out / HYDRA_DIR / "config.yaml").is_file():
        raise FileExistsError(f"{out} already holds a run ({out / HYDRA_DIR / 'config.yaml'}); choose another "
                              "hydra.run.dir" + (" or pass run.resume=true to continue it"
                                                 if (out / "records").is_dir() else ""))


def write_hydra_files(out: Path, cfg: DictConfig, resume: bool = False) -> Path | None:
    """Write the job's config ``cfg``, Hydra's settings and the overrides into ``out/.hydra`` (a
    resumed run: ``out/.hydra-resume-<time>``), as Hydra itself would; returns the folder
    (``None`` outside a Hydra app or on a torchrun rank other than 0)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.utils import _save_config
    from omegaconf import OmegaConf

    if not HydraConfig.initialized() or not is_rank_zero():
        return None
    hydra_cfg = HydraConfig.get()
    name = HYDRA_DIR if not resume else f"{HYDRA_DIR}-resume-{datetime.datetime.now():%Y-%m-%d_%H-%M-%S}"
    folder = out / name
    _save_config(cfg, "config.yaml", folder)
    _save_config(OmegaConf.create({"hydra": OmegaConf.to_container(hydra_cfg)}), "hydra.yaml", folder)
    _save_config(OmegaConf.create(list(hydra_cfg.overrides.task)), "overrides.yaml", folder)
    return folder
