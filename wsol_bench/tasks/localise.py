"""``task=localise`` (the default): top-k saliency localisation over a data set, then reports.

Under torchrun each rank processes its shard of batches; rank 0 merges the part files
and writes the same reports as a single-process run.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.distributed as dist
from omegaconf import DictConfig

from wsol_bench.config import DatasetConfig, ModelConfig, RunConfig, SaliencyConfig, SegmentationConfig
from wsol_bench.data.demo import prepare_demo_images
from wsol_bench.data.images import read_rgb
from wsol_bench.data.sources import EvaluationSet, load_evaluation_set
from wsol_bench.localisation.records import ImageRecord
from wsol_bench.localisation.run import (
    BatchArtefacts,
    RunSettings,
    Shard,
    global_batches,
    localise_dataset,
    prepare_records_dir,
)
from wsol_bench.localisation.store import read_parts
from wsol_bench.reports.figures import save_localisation_figure
from wsol_bench.saliency.figures import save_saliency_figure
from wsol_bench.reports.localisation_report import write_localisation_report
from wsol_bench.tasks import run_dir, section

log = logging.getLogger(__name__)


def settings_from(cfg: DictConfig) -> RunSettings:
    return RunSettings(
        dataset=section(cfg, "dataset", DatasetConfig),
        model=section(cfg, "model", ModelConfig),
        saliency=section(cfg, "saliency", SaliencyConfig),
        segmentation=section(cfg, "segmentation", SegmentationConfig),
        run=section(cfg, "run", RunConfig),
    )


def run(cfg: DictConfig) -> float | None:
    """Localise, merge, report; returns the top-5 localisation error (rank 0) or None."""
    settings = settings_from(cfg)
    if settings.dataset.prepare_demo and settings.dataset.images:
        prepare_demo_images(settings.dataset.images)
    data = load_evaluation_set(settings.dataset, lenient=True)
    shard = Shard.from_env()
    distributed = shard.world_size > 1
    if distributed and not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(shard.local_rank)
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    out = run_dir()
    if distributed:  # Hydra's timestamped folder may differ between ranks: all use rank 0's
        shared = [str(out)]
        dist.broadcast_object_list(shared, src=0)
        out = Path(shared[0])
    records_dir = out / "records"
    figures_dir = out / "figures"
    figures_dir.mkdir(parents=True, exist_ok=True)
    if settings.model.num_classes != len(data.synsets):
        raise ValueError(
            f"model.num_classes={settings.model.num_classes} but the data set has {len(data.synsets)} classes: "
            "localisation needs a classifier over the data set's classes (sorted-WNID order)"
        )
    try:
        if shard.rank == 0:
            prepare_records_dir(records_dir, data.image_ids, settings.saliency.batch_images, settings.run.resume)
        if distributed:
            dist.barrier()  # no rank starts before rank 0 has checked the folder
        counters = localise_dataset(
            data, settings, records_dir, shard,
            on_batch=lambda records, artefacts: _save_figures(figures_dir, records, artefacts, data),
        )
        log.info("rank %d: %s", shard.rank, counters)
        if distributed:
            dist.barrier()
        if shard.rank != 0:
            return None
        records = merge_records(records_dir, data, settings.saliency.batch_images)
        description = {
            "data": settings.dataset.name,
            "model": settings.model.name,
            "segmentation": settings.segmentation.method,
            "world_size": shard.world_size,
            **{f"rank0_{k}": v for k, v in counters.items()},
        }
        result = write_localisation_report(out, records, data, description)
    finally:
        if distributed and dist.is_initialized():
            dist.destroy_process_group()
    print((out / "report.md").read_text())
    log.info("reports written to %s", out)
    return result["loc_error_at_k"][-1]


def merge_records(records_dir: Path, data: EvaluationSet, batch_images: int) -> list[ImageRecord]:
    """All records of the run, in image order; a missing batch is an error naming it."""
    parts = read_parts(records_dir)
    expected = global_batches(len(data.image_ids), batch_images)
    missing = [b for b in range(len(expected)) if b not in parts]
    if missing:
        raise RuntimeError(f"{records_dir}: batches {missing[:10]} have no valid results; rerun with run.resume=true")
    records = [r for b in range(len(expected)) for r in parts[b]]
    ids = [r.image_id for r in records]
    if ids != data.image_ids:
        raise RuntimeError(f"{records_dir}: the stored results do not match the evaluated images (another run?)")
    return records


def _save_figures(
    directory: Path, records: list[ImageRecord], artefacts: dict[int, BatchArtefacts], data: EvaluationSet
) -> None:
    for record in records:
        art = artefacts.get(record.index)
        if art is None:
            continue
        image = read_rgb(data.image_paths[record.image_id])
        gt = data.ground_truth[record.image_id]
        predicted = [(data.synsets.name(s), b) for s, b in zip(record.synsets, record.boxes)]
        mask = art.boxes.masks[0] if art.boxes.masks else None
        title = f"{record.image_id}: GT {data.synsets.name(gt.label)}"
        stem = directory / f"{record.index:05d}_{record.image_id}"
        save_localisation_figure(stem.with_suffix(".png"), image, gt.boxes, predicted, art.saliency.maps[0], mask, title)
        names = [data.synsets.name(data.synsets.wnid(int(c))) for c in art.saliency.classes]
        save_saliency_figure(f"{stem}_saliency.png", art.resized, art.saliency, names)
