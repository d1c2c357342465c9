"""``python -m wsol_bench``: the Hydra application; dispatches to the runner named by ``task``."""

from __future__ import annotations

import importlib
from pathlib import Path

import hydra
from omegaconf import DictConfig

from wsol_bench.config import register_configs

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")
TASKS = {
    "localise": "wsol_bench.tasks.localise",
    "evaluate": "wsol_bench.tasks.evaluate",
    "train": "wsol_bench.tasks.train",
    "class_model": "wsol_bench.tasks.class_model",
    "sweep_report": "wsol_bench.tasks.sweep_report",
}

register_configs()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> object:
    """Run the task named by ``task.name``; its return value is the run's headline figure."""
    if cfg.task.name not in TASKS:
        raise ValueError(f"task.name={cfg.task.name!r} is not one of {sorted(TASKS)}")
    return importlib.import_module(TASKS[cfg.task.name]).run(cfg)


if __name__ == "__main__":
    main()
