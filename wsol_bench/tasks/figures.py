"""``task=figures``: redraw a finished run's figures, or compare runs, without computing saliency.

* ``run_dir=DIR``: the run's per-image figures and the paper's Figures 2 and 3
  (:mod:`wsol_bench.reports.run_figures`) for its first ``run.figures`` images, into
  ``DIR/figures``. The run's settings come from ``DIR/.hydra/config.yaml``, its results from
  ``DIR/records``, its maps from its saliency cache (the namespace in
  ``DIR/records/saliency_namespace.json``): no model is loaded.
* ``runs=[DIR1,DIR2,...]``: one figure, ``comparison.png`` in this task's run folder, with
  one row per image and one column per run (each run's map of the ground-truth class),
  e.g. the same images under several saliency methods.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from wsol_bench.data.sources import EvaluationSet, load_evaluation_set
from wsol_bench.pipeline.engine import merge_records
from wsol_bench.pipeline.records import ImageRecord
from wsol_bench.pipeline.run import SALIENCY_NAMESPACE, LocalisationPlan
from wsol_bench.pipeline.store import MANIFEST
from wsol_bench.reports.run_figures import (
    MapsOf,
    cached_maps,
    comparison_figure,
    write_run_figures,
)
from wsol_bench.saliency.cache import SaliencyCache
from wsol_bench.tasks import run_dir
from wsol_bench.tasks.factory import localisation_plan, resolve_demo

log = logging.getLogger(__name__)


def load_run(directory: str | Path) -> tuple[LocalisationPlan, EvaluationSet, list[ImageRecord], MapsOf]:
    """A finished run's plan, data, records and maps (from its saliency cache)."""
    directory = Path(directory)
    config = directory / ".hydra" / "config.yaml"
    manifest = directory / "records" / MANIFEST
    namespace = directory / "records" / SALIENCY_NAMESPACE
    for path in (config, manifest, namespace):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found; run_dir must be the folder of a finished localisation run")
    cfg = OmegaConf.load(config)
    plan = localisation_plan(cfg)  # type: ignore[arg-type]
    data = load_evaluation_set(resolve_demo(plan.dataset), lenient=True)
    identity = json.loads(manifest.read_text(encoding="utf-8"))
    records = merge_records(directory / "records", data, identity["batch_images"])
    if not plan.engine.cache:
        raise ValueError(f"{directory}: the run kept no saliency cache (engine.cache=false): its maps are gone")
    cache = SaliencyCache(plan.engine.cache_dir, json.loads(namespace.read_text(encoding="utf-8")))
    return plan, data, records, cached_maps(cache, data, plan.crops.resize, plan.crops.top_k)


def run(cfg: DictConfig) -> int:
    """Draw; returns the number of files written."""
    count = int(cfg.run.figures)
    if cfg.get("runs"):
        runs = []
        for directory in cfg.runs:
            plan, data, records, maps_of = load_run(directory)
            label = f"{Path(directory).name}: {plan.method.name or type(plan.method).__name__}"
            runs.append((label, data, {r.image_id: r for r in records}, maps_of, plan.crops.resize))
        path = comparison_figure(run_dir("figures") / "comparison.png", runs, count)
        print(f"comparison of {len(runs)} runs written to {path}")
        return 1
    if not cfg.get("run_dir"):
        raise ValueError("task=figures needs run_dir=<a localisation run folder> or runs=[DIR1,DIR2,...]")
    plan, data, records, maps_of = load_run(cfg.run_dir)
    written = write_run_figures(Path(cfg.run_dir) / "figures", records, data, plan.extractor, maps_of,
                                plan.crops.resize, count)
    print(f"{len(written)} figures written to {Path(cfg.run_dir) / 'figures'}")
    return len(written)
