"""``task=localise`` (the default): top-k saliency localisation over a data set, then reports.

Under torchrun, or with ``run.processes`` ranks (default: every core), each rank processes
its shard of batches; rank 0 merges the part files and writes the same reports as a
single-process run.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig

from wsol_bench.data.images import read_rgb
from wsol_bench.data.sources import EvaluationSet, load_evaluation_set
from wsol_bench.distributed import barrier, broadcast_object, env_ranks, init_distributed, shutdown_distributed
from wsol_bench.models import build_classifier, resolve_device
from wsol_bench.models.batchnorm import fold_batchnorm
from wsol_bench.pipeline.engine import BatchArtefacts, Pipeline, global_batches, localise_dataset, merge_records
from wsol_bench.pipeline.launch import launch_ranks
from wsol_bench.pipeline.records import ImageRecord
from wsol_bench.pipeline.store import prepare_records_dir
from wsol_bench.reports.localisation_report import write_localisation_report
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
        classifier = build_classifier(plan.model)
        if plan.fold_batchnorm:  # saliency.fold_batchnorm: a folded copy, same logits (models/batchnorm.py)
            classifier = fold_batchnorm(classifier)
        pipeline = Pipeline(classifier, plan.method, plan.crops, plan.extractor, plan.evaluators)
        records_dir = out / "records"
        figures_dir = out / "figures"
        identity = {**pipeline.identity(), "data": data.identity, "batch_images": plan.engine.batch_images}
        if info.is_main:
            prepare_records_dir(records_dir, identity, plan.engine.resume)
        barrier(info)  # no rank starts before rank 0 has checked the folder
        counters = localise_dataset(
            data, pipeline, plan.engine, records_dir, info,
            on_batch=lambda records, artefacts: _save_figures(figures_dir, records, artefacts, data),
        )
        log.info("rank %d: %s", info.rank, counters)
        barrier(info)
        if not info.is_main:
            return None
        records = merge_records(records_dir, data, plan.engine.batch_images)
        description = {
            "data": data.spec.name,
            "model": classifier.name,
            "saliency": type(plan.method).name,
            "segmentation": type(plan.extractor).name,
            "world_size": info.world_size,
            **{f"rank0_{k}": v for k, v in counters.items()},
        }
        result = write_localisation_report(out, records, data, plan.evaluators, description)
    finally:
        shutdown_distributed()
    print((out / "report.md").read_text())
    log.info("reports written to %s", out)
    return result["loc_error_at_k"][-1] if "loc_error_at_k" in result else None


def _save_figures(
    directory: Path, records: list[ImageRecord], artefacts: dict[int, BatchArtefacts], data: EvaluationSet
) -> None:
    if not artefacts:
        return
    from wsol_bench.figures.localisation import save_localisation_figure  # matplotlib: 0.5 s of every rank's start
    from wsol_bench.figures.saliency import save_saliency_figure

    for record in records:
        art = artefacts.get(record.index)
        if art is None:
            continue
        image = read_rgb(data.image_paths[record.image_id], data.max_pixels)
        gt = data.ground_truth[record.image_id]
        predicted = [(data.synsets.name(s), b) for s, b in zip(record.synsets, record.boxes)]
        kept = art.boxes.localisations
        mask = kept[0].mask if kept else None
        title = f"{record.image_id}: GT {data.synsets.name(gt.label)}"
        stem = directory / f"{record.index:05d}_{record.image_id}"
        save_localisation_figure(stem.with_suffix(".png"), image, gt.boxes, predicted, art.saliency.maps[0], mask, title)
        names = [data.synsets.name(data.synsets.wnid(int(c))) for c in art.saliency.classes]
        save_saliency_figure(f"{stem}_saliency.png", art.resized, art.saliency, names)
