"""``task=localise`` (the default): top-k saliency localisation over a data set, then reports.

Under torchrun, or with ``run.processes`` ranks (default: every core), each rank processes
its shard of batches; rank 0 merges the part files and writes the same reports as a
single-process run.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import torch
from omegaconf import DictConfig

from wsol_bench.data.scoremaps import write_metadata
from wsol_bench.data.sources import DatasetSpec, EvaluationSet, load_evaluation_set
from wsol_bench.distributed import barrier, broadcast_object, env_ranks, init_distributed, shutdown_distributed
from wsol_bench.models import resolve_device
from wsol_bench.pipeline.engine import Pipeline, global_batches, localise_dataset, merge_records
from wsol_bench.pipeline.launch import launch_ranks
from wsol_bench.pipeline.records import OK, ImageRecord
from wsol_bench.pipeline.store import prepare_records_dir
from wsol_bench.reports.localisation_report import write_localisation_report
from wsol_bench.reports.run_figures import cached_maps, write_run_figures
from wsol_bench.saliency import SaliencyResult
from wsol_bench.saliency.base import method_label
from wsol_bench.saliency.cache import SaliencyCache
from wsol_bench.tasks import run_dir
from wsol_bench.tasks.factory import LocalisationPlan, localisation_plan, resolve_demo, section

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> float | None:
    """Localise, merge, report; returns the top-5 localisation error (rank 0) or None."""
    plan = localisation_plan(cfg)  # every setting checked before anything loads
    device = resolve_device(plan.model.device)
    data = None
    if env_ranks()[0] == 0:  # rank 0 (or the only process) resolves the demo and reads the set once
        spec = resolve_demo(plan.dataset, section(cfg, "dataset").get("demo_dir", "outputs/.demo_images"))
        data = load_evaluation_set(spec, lenient=True)
    batches = len(global_batches(len(data.image_ids), plan.engine.batch_images)) if data is not None else 1
    with launch_ranks(plan.processes, device, batches):  # run.processes: this process becomes rank 0 of N
        return _localise(plan, device, data)


def data_label(spec: DatasetSpec, n_images: int) -> str:
    """What the data set is called in reports: its config name, the demo, or the user's folder."""
    if spec.name not in ("demo", "custom"):
        return f"{spec.name} ({n_images} images)"
    if spec.name == "demo" and not spec.user_paths:
        return f"demo ({n_images} images)"
    return f"{spec.images or spec.root or spec.annotations} ({n_images} images)"


def run_description(plan: LocalisationPlan, model: str, data: str) -> dict[str, str]:
    """Model, saliency method, crops, box extractor and data of a run (reports' headline)."""
    crops = plan.crops
    return {
        "model": model,
        "saliency": method_label(plan.method),
        "crops": f"{crops.crops} x {crops.crop}px of {crops.resize}px, top-{crops.top_k}",
        "segmentation": plan.extractor.name or type(plan.extractor).__qualname__,
        "data": data,
    }


def _localise(plan: LocalisationPlan, device: torch.device, data: EvaluationSet | None) -> float | None:
    info = init_distributed(device)
    try:
        out = Path(broadcast_object(str(run_dir()), info))  # every rank writes into rank 0's run folder
        spec = broadcast_object(data.spec if data is not None else None, info)
        if data is None:
            data = load_evaluation_set(spec, lenient=True)
        if plan.model.num_classes != len(data.synsets):
            raise ValueError(
                f"model.num_classes={plan.model.num_classes} but the data set has {len(data.synsets)} classes: "
                "localisation needs a classifier over the data set's classes (sorted-WNID order)")
        classifier = plan.saliency_classifier()  # BatchNorm-folded when saliency.fold_batchnorm
        pipeline = Pipeline(classifier, plan.method, plan.crops, plan.extractor, plan.evaluators)
        records_dir = out / "records"
        kept: dict[str, SaliencyResult] = {}  # maps of this process's first images, for the figures
        engine = plan.engine
        if engine.scoremaps_dir:  # run.save_maps: inside this run's folder
            engine = replace(engine, scoremaps_dir=str(out / engine.scoremaps_dir))
        identity = {**pipeline.identity(), "data": data.identity, "batch_images": engine.batch_images}
        if info.is_main:
            prepare_records_dir(records_dir, identity, engine.resume)
        barrier(info)  # no rank starts before rank 0 has checked the folder
        counters = localise_dataset(
            data, pipeline, engine, records_dir, info,
            on_batch=lambda records, maps: kept.update({r.image_id: maps[r.index] for r in records if r.index in maps}),
        )
        log.info("rank %d: %s", info.rank, counters)
        barrier(info)
        if not info.is_main:
            return None
        records = merge_records(records_dir, data, engine.batch_images)
        if engine.scoremaps_dir:
            localised = [r for r in records if r.status == OK]
            write_metadata(engine.scoremaps_dir, {r.image_id: data.ground_truth[r.image_id] for r in localised},
                           {r.image_id: (r.height, r.width) for r in localised}, data.synsets)
        description = {
            **run_description(plan, classifier.name, data_label(plan.dataset, len(data.image_ids))),
            "world_size": info.world_size,
            **{f"rank0_{k}": v for k, v in counters.items()},
        }
        if plan.engine.figures:
            cache = (SaliencyCache(plan.engine.cache_dir, pipeline.saliency_namespace())
                     if plan.engine.cache_dir else None)
            from_cache = cached_maps(cache, data, plan.crops.resize, plan.crops.top_k) if cache else None

            def maps_of(record: ImageRecord) -> SaliencyResult | None:
                return kept.get(record.image_id) or (from_cache(record) if from_cache else None)

            write_run_figures(out / "figures", records, data, plan.extractor, maps_of, plan.crops.resize,
                              plan.engine.figures)
        result = write_localisation_report(out, records, data, plan.evaluators, description)
    finally:
        shutdown_distributed()
    print((out / "report.md").read_text())
    log.info("reports written to %s", out)
    return result["loc_error_at_k"][-1] if "loc_error_at_k" in result else None
