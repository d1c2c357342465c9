"""``task=localise`` (the default): top-k saliency localisation over a data set, then reports.

The run itself is :func:`wsol_bench.pipeline.run.run_localisation` (the Python API's too);
this runner builds its plan from the config (everything checked before anything loads),
reads the data set, and writes Hydra's files once the output folder has been accepted.
"""

from __future__ import annotations

from omegaconf import DictConfig

from wsol_bench.data.sources import load_evaluation_set
from wsol_bench.pipeline.launch import already_a_rank
from wsol_bench.pipeline.run import run_localisation
from wsol_bench.tasks import check_output_dir, is_rank_zero, run_dir, write_hydra_files
from wsol_bench.tasks.factory import localisation_plan, resolve_demo, with_absolute_paths


def run(cfg: DictConfig) -> float | None:
    """Localise, merge, report; returns the top-k localisation error (rank 0) or None."""
    plan = localisation_plan(cfg)  # every setting checked before anything loads
    out = run_dir()
    if is_rank_zero():
        check_output_dir(out, plan.run.resume)
    data = load_evaluation_set(resolve_demo(plan.dataset), lenient=True)
    result = run_localisation(plan, data, out, log_file=_log_file(),
                              on_prepared=lambda: write_hydra_files(out, with_absolute_paths(cfg), plan.run.resume))
    if already_a_rank() and not result:
        return None
    print((out / "report.md").read_text())
    return result["loc_error_at_k"][-1] if result.get("loc_error_at_k") else None


def _log_file() -> str | None:
    """The Hydra job's log file (the ranks started by run.processes append to it)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    return str(run_dir() / f"{hc.job.name}.log")
