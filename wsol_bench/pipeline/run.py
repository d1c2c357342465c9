"""A whole localisation run: the plan, the ranks, the engine on each, then rank 0's reports.

:class:`LocalisationPlan` holds every part of a run, checked and nothing loaded (the CLI
builds it from the config in :mod:`wsol_bench.tasks.factory`, the Python API from its
arguments); :func:`run_localisation` runs it into a folder:

1. before any rank starts or any model loads: the folder is locked (a second run into it
   at once is refused), and a fresh run refuses a folder holding results while a resumed
   one refuses other settings (:func:`~wsol_bench.pipeline.store.prepare_records_dir`);
2. the ranks: this process alone, ``run.processes`` ranks started by torch's launcher
   (:mod:`wsol_bench.pipeline.launch`), or, under torchrun, the ranks torchrun started;
   each loads the classifier and processes its shard (:func:`~wsol_bench.pipeline.engine.localise_dataset`);
3. rank 0 merges the records and writes the score-map metadata, the figures and the reports.

One progress bar follows the run's part files, whichever ranks write them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from wsol_bench.data.scoremaps import scoremap_path, write_metadata
from wsol_bench.data.sources import DatasetSpec, EvaluationSet
from wsol_bench.distributed import (
    DistInfo,
    barrier,
    broadcast_object,
    init_distributed,
    shutdown_distributed,
)
from wsol_bench.files import atomic_write
from wsol_bench.metrics.base import Evaluator
from wsol_bench.metrics.scoring import evaluator_name
from wsol_bench.models import Classifier, ModelSpec, resolve_device
from wsol_bench.pipeline.engine import (
    Pipeline,
    global_batches,
    localise_dataset,
    merge_records,
)
from wsol_bench.pipeline.launch import already_a_rank, run_ranks
from wsol_bench.pipeline.progress import RunProgress
from wsol_bench.pipeline.records import OK, ImageRecord
from wsol_bench.pipeline.settings import (
    EngineSettings,
    RunSettings,
    usable_cores,
    world_size_for,
)
from wsol_bench.pipeline.store import prepare_records_dir, run_lock
from wsol_bench.registry import params_dict
from wsol_bench.reports.localisation_report import write_localisation_report
from wsol_bench.reports.run_figures import cached_maps, write_run_figures
from wsol_bench.saliency import CropSettings, SaliencyMethod, SaliencyResult
from wsol_bench.saliency.base import method_label, method_name
from wsol_bench.saliency.cache import SaliencyCache
from wsol_bench.saliency.ensemble import Localiser
from wsol_bench.segmentation import BoxExtractor

log = logging.getLogger(__name__)
SCOREMAPS_DIR = "scoremaps"  # inside the run folder (run.save_maps=true)
#: in records/: the saliency cache's namespace of the run (task=figures reads its maps without the model)
SALIENCY_NAMESPACE = "saliency_namespace.json"


@dataclass(frozen=True)
class LocaliserSpec:
    """One localiser of an ensemble (:mod:`wsol_bench.saliency.ensemble`), nothing loaded: its
    model, its crops, its method (``None``: the run's)."""

    model: ModelSpec
    crops: CropSettings
    method: SaliencyMethod | None = None


def part_identity(part: object) -> dict[str, Any]:
    """A part's name and parameters, as JSON-able values."""
    return {"name": method_name(part), "params": params_dict(part)}


@dataclass(frozen=True)
class LocalisationPlan:
    """Everything a localisation run is built from, checked; nothing loaded yet."""

    dataset: DatasetSpec
    model: ModelSpec
    method: SaliencyMethod
    crops: CropSettings
    extractor: BoxExtractor
    evaluators: tuple[Evaluator, ...]
    engine: EngineSettings = EngineSettings()
    run: RunSettings = RunSettings()
    classifier: Classifier | None = field(default=None, compare=False)  # a built one (Python API): not ``model``
    localisers: tuple[LocaliserSpec, ...] = ()  # an ensemble's other localisers (none: the method's maps)
    own_maps: bool = True  # with localisers: the method's own maps join the average

    def saliency_classifier(self, model: ModelSpec | None = None) -> Classifier:
        """Load the classifier (``model``: a localiser's instead) as the run's saliency sees it:
        BatchNorm-folded when ``engine.fold_batchnorm``, its 1 x 1 convolutions matrix products
        on the CPU when ``engine.pointwise_matmul`` (each copy has its own identity, hence cache
        entries)."""
        from wsol_bench.models import build_classifier
        from wsol_bench.models.batchnorm import fold_batchnorm
        from wsol_bench.models.pointwise import with_pointwise_matmul

        classifier = build_classifier(model) if model is not None else self.classifier or build_classifier(self.model)
        if self.engine.fold_batchnorm:
            classifier = fold_batchnorm(classifier)
        if self.engine.pointwise_matmul and classifier.device.type == "cpu":
            classifier = with_pointwise_matmul(classifier)
        return classifier

    def pipeline(self) -> Pipeline:
        """The run's stages, loaded (the classifier and any localisers' models)."""
        localisers = tuple(Localiser(loc.method or self.method, self.saliency_classifier(loc.model), loc.crops)
                           for loc in self.localisers)
        return Pipeline(self.saliency_classifier(), self.method, self.crops, self.extractor, self.evaluators,
                        localisers, self.own_maps, self.engine.precision)

    def device(self) -> torch.device:
        """Where the classifier runs (a built classifier's own device)."""
        return self.classifier.device if self.classifier is not None else resolve_device(self.model.device)

    def identity(self, data: EvaluationSet) -> dict[str, Any]:
        """What a record of this run depends on (the manifest a resume is checked against):
        data and the images' sizes and times, model, method, crops, extractor, metrics,
        batching, score-map export."""
        return {
            "data": {**data.identity, "image_stats_sha256": image_stats_digest(data)},
            "model": {**(self.classifier.identity if self.classifier else params_dict(self.model)),
                      "fold_batchnorm": self.engine.fold_batchnorm, "pointwise_matmul": self.engine.pointwise_matmul,
                      "precision": self.engine.precision},
            "saliency": part_identity(self.method),
            "tta": params_dict(self.crops),
            "segmentation": part_identity(self.extractor),
            "evaluation": {evaluator_name(e): params_dict(e) for e in self.evaluators},
            "batch_images": self.engine.batch_images,
            "save_maps": self.run.save_maps,
            **({"ensemble": {"own_maps": self.own_maps, "localisers": [
                {"model": params_dict(loc.model), "tta": params_dict(loc.crops),
                 "saliency": part_identity(loc.method or self.method)} for loc in self.localisers]}}
               if self.localisers else {}),
        }

    def description(self, model: str, data: EvaluationSet) -> dict[str, str]:
        """Model, saliency method, crops, box extractor and data (the reports' headline)."""
        crops = self.crops
        ensemble = "".join(f" + {method_label(loc.method or self.method)} of {loc.model.name} at "
                           f"{loc.crops.crops} x {loc.crops.crop}px of {loc.crops.resize}px" for loc in self.localisers)
        if ensemble and not self.own_maps:
            ensemble = f" (maps:{ensemble[2:]})"
        return {
            "model": model,
            "saliency": method_label(self.method) + ensemble,
            "crops": f"{crops.crops} x {crops.crop}px of {crops.resize}px, top-{crops.top_k}",
            "segmentation": method_name(self.extractor),
            "data": data_label(self.dataset, len(data.image_ids)),
        }


def image_stats_digest(data: EvaluationSet) -> str | None:
    """SHA-256 of every image's id, size and modification time: a resume over images whose
    files changed is refused (``None`` for a set without image files)."""
    if not data.image_paths:
        return None
    digest = hashlib.sha256()
    for image_id in data.image_ids:
        stat = data.image_paths[image_id].stat()
        digest.update(f"{image_id}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def data_label(spec: DatasetSpec, n_images: int) -> str:
    """What the data set is called in reports: its config name, the demo, or the user's folder."""
    if spec.name not in ("demo", "custom"):
        return f"{spec.name} ({n_images} images)"
    if spec.name == "demo" and not spec.user_paths:
        return f"demo ({n_images} images)"
    return f"{spec.images or spec.root or spec.annotations} ({n_images} images)"


@dataclass(frozen=True)
class RankJob:
    """What every rank of a run needs (picklable: it is sent to spawned ranks)."""

    plan: LocalisationPlan
    data: EvaluationSet
    out_dir: str
    prepare_here: bool = False  # rank 0 locks and checks the folder (torchrun: no launching process did)
    batch_sizes: list[int] = field(default_factory=list)
    on_prepared: Callable[[], object] | None = None  # called once the folder is accepted (torchrun's rank 0)


def run_localisation(plan: LocalisationPlan, data: EvaluationSet, out_dir: str | Path,
                     log_file: str | Path | None = None,
                     on_prepared: Callable[[], object] | None = None) -> dict[str, Any]:
    """Run ``plan`` on ``data`` into ``out_dir``; returns the contents of ``metrics.json``
    (on rank 0 of a torchrun job and in a launching process; ``{}`` on other torchrun ranks).
    ``on_prepared()`` is called once the folder is locked and accepted, before any rank
    starts (the CLI writes Hydra's files then); ``log_file``: where started ranks log too."""
    out = Path(out_dir)
    if plan.run.save_maps:  # ids that cannot name a score map or a metadata line: refused before anything runs
        for image_id in data.image_ids:
            scoremap_path(out / SCOREMAPS_DIR, image_id)
    device = plan.device()
    batch_sizes = [len(b) for b in global_batches(len(data.image_ids), plan.engine.batch_images)]
    if already_a_rank():  # torchrun started the ranks: rank 0 prepares the folder inside the group
        return rank_main(RankJob(plan, data, str(out), True, batch_sizes, on_prepared)) or {}
    world, limits = world_size_for(plan.run.processes, device, len(batch_sizes))
    if plan.run.processes != "auto" and world < int(plan.run.processes):
        log.warning("run.processes=%s: starting %d ranks (at most one per %s)", plan.run.processes, world, limits)
    job = RankJob(plan, data, str(out), batch_sizes=batch_sizes)
    if world > 1 and not picklable(job):
        log.warning("run.processes: the run's parts cannot be sent to other processes (a lambda or a local "
                    "object?); running one process")
        world = 1
    with run_lock(out, f"localisation into {out}"):
        prepare_records_dir(out / "records", plan.identity(data), plan.run.resume)
        if on_prepared is not None:
            on_prepared()
        with RunProgress(out / "records", batch_sizes, plan.run.progress):
            if world == 1:
                rank_main(job)
            else:
                threads = max(1, usable_cores() // world) if device.type == "cpu" else 1
                log.info("run.processes: %d ranks, %d torch thread(s) each", world, threads)
                run_ranks(rank_main, (job,), world, threads, log_file=str(log_file) if log_file else None)
    return json.loads((out / "metrics.json").read_text(encoding="utf-8"))


def picklable(obj: object) -> bool:
    try:
        pickle.dumps(obj)
    except Exception:  # anything pickle refuses
        return False
    return True


def rank_main(job: RankJob) -> dict[str, Any] | None:
    """One rank: join the group, load the classifier, process this rank's batches; rank 0
    then merges and writes the reports (returns ``metrics.json``'s contents)."""
    device = job.plan.device()
    info = init_distributed(device)
    if job.prepare_here and info.distributed and device.type == "cpu":  # torchrun's ranks share the cores
        torch.set_num_threads(max(1, usable_cores() // info.world_size))
    try:
        out = Path(broadcast_object(job.out_dir, info))  # every rank writes into rank 0's run folder
        if job.prepare_here:
            return _torchrun_rank(job, info, out)
        return _localise(job, info, out)
    finally:
        shutdown_distributed()


def _torchrun_rank(job: RankJob, info: DistInfo, out: Path) -> dict[str, Any] | None:
    """Under torchrun: rank 0 holds the folder's lock and checks it, then every rank runs."""
    if not info.is_main:
        barrier(info)
        return _localise(job, info, out)
    with run_lock(out, f"localisation into {out} (torchrun, {info.world_size} ranks)"):
        prepare_records_dir(out / "records", job.plan.identity(job.data), job.plan.run.resume)
        if job.on_prepared is not None:
            job.on_prepared()
        barrier(info)  # no rank starts before rank 0 has checked the folder
        with RunProgress(out / "records", job.batch_sizes, job.plan.run.progress):
            return _localise(job, info, out)


def _localise(job: RankJob, info: DistInfo, out: Path) -> dict[str, Any] | None:
    plan, data = job.plan, job.data
    pipeline = plan.pipeline()
    classifier = pipeline.classifier
    records_dir = out / "records"
    if info.is_main:
        atomic_write(records_dir / SALIENCY_NAMESPACE, json.dumps(pipeline.saliency_namespace(), indent=1) + "\n")
    kept: dict[str, SaliencyResult] = {}  # maps of this rank's first images, for the figures
    scoremaps_dir = str(out / SCOREMAPS_DIR) if plan.run.save_maps else None
    counters = localise_dataset(
        data, pipeline, plan.engine, plan.run, records_dir, info, scoremaps_dir,
        on_batch=lambda records, maps: kept.update({r.image_id: maps[r.index] for r in records if r.index in maps}),
    )
    log.info("rank %d: %s", info.rank, counters)
    barrier(info)
    if not info.is_main:
        return None
    records = merge_records(records_dir, data, plan.engine.batch_images)
    if scoremaps_dir:
        localised = [r for r in records if r.status == OK]
        write_metadata(scoremaps_dir, {r.image_id: data.ground_truth[r.image_id] for r in localised},
                       {r.image_id: (r.height, r.width) for r in localised}, data.synsets)
    description = {**plan.description(classifier.name, data), "world_size": info.world_size,
                   **{f"rank0_{k}": v for k, v in counters.items()}}
    if plan.run.figures:
        cache = (SaliencyCache(plan.engine.cache_dir, pipeline.saliency_namespace())
                 if plan.engine.cache and plan.method.cacheable else None)
        from_cache = cached_maps(cache, data, plan.crops.resize, plan.crops.top_k) if cache else None

        def maps_of(record: ImageRecord) -> SaliencyResult | None:
            return kept.get(record.image_id) or (from_cache(record) if from_cache else None)

        write_run_figures(out / "figures", records, data, plan.extractor, maps_of, plan.crops.resize, plan.run.figures)
    result = write_localisation_report(out, records, data, plan.evaluators, description)
    log.info("reports written to %s", out)
    return result


__all__ = ["LocalisationPlan", "RankJob", "SALIENCY_NAMESPACE", "SCOREMAPS_DIR", "data_label", "rank_main",
           "run_localisation"]
