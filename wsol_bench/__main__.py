"""``python -m wsol_bench`` / ``wsol-bench``: a reference harness for saliency-based weakly
supervised object localisation on ImageNet (Simonyan et al. 2014). The Hydra application:
dispatches to the runner named by ``task.name``. The configs ship inside the package
(``pkg://wsol_bench.conf``, ``conf/`` in the repository), so it runs from any directory.

A setting, data or output-folder problem is reported as one message, without a traceback
(``WSOL_BENCH_TRACEBACK=1`` shows it); Ctrl-C says how to resume the run.
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
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
}
#: tasks that write Hydra's files themselves, once their output folder is accepted
WRITE_OWN_HYDRA_FILES = ("localise",)

register_configs()


def _user_errors() -> tuple[type[BaseException], ...]:
    from wsol_bench.pipeline.launch import RankFailed
    from wsol_bench.pipeline.store import RunLocked

    return ValueError, TypeError, FileNotFoundError, FileExistsError, NotADirectoryError, RunLocked, RankFailed


@hydra.main(version_base="1.3", config_path="pkg://wsol_bench.conf", config_name="config")
def main(cfg: DictConfig) -> object:
    """Run the task named by ``task.name``; its return value is the run's headline figure."""
    from wsol_bench.tasks import check_output_dir, run_dir, write_hydra_files

    try:
        if cfg.task.name not in TASKS:
            raise ValueError(f"task.name={cfg.task.name!r} is not one of {', '.join(sorted(TASKS))}")
        module = importlib.import_module(TASKS[cfg.task.name])
        if cfg.task.name not in WRITE_OWN_HYDRA_FILES:
            resume = bool(cfg.task.name == "train" and cfg.train.resume)
            check_output_dir(run_dir(), resume)
            write_hydra_files(run_dir(), cfg, resume)
        return module.run(cfg)
    except KeyboardInterrupt:
        _interrupted(cfg)
    except _user_errors() as err:
        if os.environ.get("WSOL_BENCH_TRACEBACK", "0") != "0" or os.environ.get("HYDRA_FULL_ERROR", "0") != "0":
            raise
        sys.stderr.write(f"error: {err}\n")
        sys.exit(2)
    finally:
        _remove_rank_folder()
    return None


def _interrupted(cfg: DictConfig) -> None:
    """One line instead of a traceback: what was kept and how to resume."""
    from wsol_bench.tasks import run_dir

    out = run_dir()
    if cfg.task.name == "localise" and (out / "records").is_dir():
        parts = len(list((out / "records").glob("part-*.jsonl")))
        sys.stderr.write(f"\ninterrupted: {parts} finished batches are kept in {out / 'records'}; resume with the same "
                         f"command and hydra.run.dir={out} run.resume=true\n")
    else:
        sys.stderr.write("\ninterrupted\n")
    sys.exit(130)


def _remove_rank_folder() -> None:
    """Remove the temporary Hydra folder of a torchrun rank other than 0 (see config.hydra_run_dir)."""
    from hydra.core.hydra_config import HydraConfig

    out = Path(HydraConfig.get().runtime.output_dir)
    if out.name.startswith(RANK_DIR_PREFIX) and out.parent == Path(tempfile.gettempdir()) and os.environ.get("RANK", "0") != "0":
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
