"""``python -m wsol_bench`` / ``wsol-bench``: the Hydra application; dispatches to the runner
named by ``task.name``. The configs ship inside the package (``pkg://wsol_bench.conf``,
``conf/`` in the repository), so it runs from any directory."""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
from pathlib import Path

import hydra
from omegaconf import DictConfig

from wsol_bench.config import RANK_DIR_PREFIX, register_configs

TASKS = {
    "localise": "wsol_bench.tasks.localise",
    "evaluate": "wsol_bench.tasks.evaluate",
    "train": "wsol_bench.tasks.train",
    "class_model": "wsol_bench.tasks.class_model",
    "sweep_report": "wsol_bench.tasks.sweep_report",
    "figures": "wsol_bench.tasks.figures",
    "sanity": "wsol_bench.tasks.sanity",
}

register_configs()


@hydra.main(version_base="1.3", config_path="pkg://wsol_bench.conf", config_name="config")
def main(cfg: DictConfig) -> object:
    """Run the task named by ``task.name``; its return value is the run's headline figure."""
    if cfg.task.name not in TASKS:
        raise ValueError(f"task.name={cfg.task.name!r} is not one of {sorted(TASKS)}")
    try:
        return importlib.import_module(TASKS[cfg.task.name]).run(cfg)
    finally:
        _remove_rank_folder()


def _remove_rank_folder() -> None:
    """Remove the temporary Hydra folder of a torchrun rank other than 0 (see config.hydra_run_dir)."""
    from hydra.core.hydra_config import HydraConfig

    out = Path(HydraConfig.get().runtime.output_dir)
    if out.name.startswith(RANK_DIR_PREFIX) and out.parent == Path(tempfile.gettempdir()) and os.environ.get("RANK", "0") != "0":
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
