"""The run engine: saliency, boxes and per-image metric states for every image of an
evaluation set, sharded, resumable and overlapped. It knows the stages only through their
protocols (:class:`~wsol_bench.saliency.SaliencyMethod`,
:class:`~wsol_bench.segmentation.BoxExtractor`, :class:`~wsol_bench.metrics.Evaluator`),
so a new method, extractor or metric never changes it.

* **Sharding** (torchrun, or ``run.processes``): the images are cut into global batches of
  ``batch_images`` consecutive images; batch ``b`` belongs to rank ``b % world_size``.
  Every rank therefore sees the same batches, with the same composition, as a single
  process does, so the results are identical row for row.
* **Resume**: each finished batch is written atomically as one part file
  (:mod:`wsol_bench.pipeline.store`); a restarted run skips the batches whose part is
  valid and redoes the rest.
* **Overlap**: saliency of batch ``n + 1`` runs while a pool of ``segmentation_workers``
  processes segments batch ``n`` (and computes the metrics' per-image states); with 0
  workers the same code runs in the main process.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wsol_bench.boxes import Box, ImageAnnotation
from wsol_bench.data.images import (
    ImageDataset,
    LoadedImage,
    collate_images,
    die_with_parent,
)
from wsol_bench.data.scoremaps import write_scoremap
from wsol_bench.data.sources import EvaluationSet
from wsol_bench.distributed import DistInfo
from wsol_bench.files import OutputError
from wsol_bench.frames import resize_shorter_side
from wsol_bench.metrics.base import Evaluator, MapSample
from wsol_bench.metrics.scoring import evaluator_name, metric_states
from wsol_bench.models import Classifier
from wsol_bench.pipeline.records import OK, SIZE_MISMATCH, ImageRecord, failed_record
from wsol_bench.pipeline.settings import EngineSettings, RunSettings
from wsol_bench.pipeline.store import read_parts, write_part
from wsol_bench.registry import params_dict
from wsol_bench.saliency import (
    CropSettings,
    SaliencyMethod,
    SaliencyResult,
    image_saliency,
)
from wsol_bench.saliency.base import SaliencyContractError, method_label
from wsol_bench.saliency.cache import SaliencyCache
from wsol_bench.saliency.ensemble import Localiser, ensemble_saliency
from wsol_bench.saliency.image_saliency import ModelOutputError
from wsol_bench.segmentation import BoxExtractor, localise_image

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pipeline:
    """The stages of a localisation run, loaded: classifier, saliency method under its crops
    (and, for an ensemble, the localisers whose maps replace or join its own), box extractor,
    evaluators."""

    classifier: Classifier
    method: SaliencyMethod
    crops: CropSettings
    extractor: BoxExtractor
    evaluators: tuple[Evaluator, ...] = ()
    localisers: tuple[Localiser, ...] = ()
    own_maps: bool = True
    precision: str = "float32"  # "bfloat16": the saliency calls under bfloat16 autocast

    def saliency_namespace(self) -> dict[str, Any]:
        """What, besides the image, a saliency result depends on (the cache namespace): the
        model, method and crops (and every localiser's), and a precision other than float32."""
        namespace: dict[str, Any] = {
            "model": self.classifier.identity,
            "saliency": {"method": _part_name(self.method), "params": params_dict(self.method),
                         "crops": params_dict(self.crops)},
        }
        if self.localisers:
            namespace["ensemble"] = {"own_maps": self.own_maps, "localisers": [
                {"model": loc.classifier.identity, "method": _part_name(loc.method),
                 "params": params_dict(loc.method), "crops": params_dict(loc.crops)} for loc in self.localisers]}
        if self.precision != "float32":
            namespace["precision"] = self.precision
        return namespace

    def saliency(self, images: Sequence[LoadedImage], extra: Sequence[Sequence[int]],
                 num_classes: int) -> list[SaliencyResult]:
        """The maps of ``images``' top-k classes and ``extra`` ones: the method's own, or the
        ensemble's (:func:`~wsol_bench.saliency.ensemble.ensemble_saliency`, in the same frame)."""
        dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[self.precision]
        with torch.autocast(self.classifier.device.type, dtype=dtype, enabled=dtype != torch.float32):
            return self._saliency(images, extra, num_classes)

    def _saliency(self, images: Sequence[LoadedImage], extra: Sequence[Sequence[int]],
                  num_classes: int) -> list[SaliencyResult]:
        if not self.localisers:
            return image_saliency(self.method, self.classifier, [_resized(im) for im in images], self.crops,
                                  extra_classes=extra, num_classes=num_classes)
        ranker = Localiser(self.method, self.classifier, self.crops)
        sources = ((ranker,) if self.own_maps else ()) + self.localisers
        originals = [im.original for im in images]
        if any(o is None for o in originals):
            raise ValueError("an ensemble needs the decoded images (ImageDataset(keep_original=True))")
        return ensemble_saliency(ranker, sources, originals, extra, num_classes)  # type: ignore[arg-type]


def _part_name(part: object) -> str:
    return getattr(part, "name", "") or f"{type(part).__module__}:{type(part).__qualname__}"


@dataclass
class ImageBoxes:
    """Boxes (original-image pixels) for the maps of one image, and its metric states."""

    boxes: list[Box]
    fallbacks: list[str | None]
    states: dict[str, Any]
    metric_failures: dict[str, str]
    seconds: float


def image_outputs(
    extractor: BoxExtractor,
    evaluators: Sequence[Evaluator],
    sample: MapSample,
    scoremaps_dir: str | None = None,
) -> ImageBoxes:
    """Boxes of every map of ``sample`` (:func:`~wsol_bench.segmentation.localise_image`), the
    states of the map-reading metrics that do not need the model, and the ground-truth
    class's score map exported into ``scoremaps_dir`` if given. Runs in the main process or
    in a segmentation worker; a failure to write the score map is the run's error
    (:class:`~wsol_bench.files.OutputError`), never the image's."""
    start = time.perf_counter()
    if sample.image is None:
        raise ValueError(f"{sample.image_id}: no image to localise in")
    located = localise_image(extractor, sample.image, sample.maps, sample.original_size)
    states, failures = metric_states([e for e in evaluators if e.needs_maps and not e.needs_model], sample)
    if scoremaps_dir is not None:
        gt_map = sample.map_of(sample.annotation.label)
        if gt_map is None:
            raise ValueError(f"{sample.image_id}: no map of the ground-truth class {sample.annotation.label}")
        write_scoremap(scoremaps_dir, sample.image_id, gt_map)
    return ImageBoxes(located.boxes, located.fallbacks, states, failures, time.perf_counter() - start)


def model_metric_states(evaluators: Sequence[Evaluator], sample: MapSample
                        ) -> tuple[tuple[dict[str, Any], dict[str, str]], dict[str, float]]:
    """``((states, failures), seconds)`` of the metrics that need the model (run where the
    classifier is), each timed: ``seconds["metric_<name>"]`` (wall seconds on this image)."""
    states: dict[str, Any] = {}
    failures: dict[str, str] = {}
    seconds: dict[str, float] = {}
    for ev in evaluators:
        start = time.perf_counter()
        own, failed = metric_states([ev], sample)
        seconds[f"metric_{evaluator_name(ev)}"] = time.perf_counter() - start
        states.update(own)
        failures.update(failed)
    return (states, failures), seconds


class InlineExecutor(Executor):
    """Runs each task at once in the calling process (``segmentation_workers=0``)."""

    def submit(self, fn: Callable, /, *args, **kwargs) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as err:  # delivered to whoever reads the future
            future.set_exception(err)
        return future


def global_batches(n_images: int, batch_images: int) -> list[list[int]]:
    """Image positions ``0..n-1`` cut into consecutive batches (the unit of sharding and resume)."""
    return [list(range(s, min(s + batch_images, n_images))) for s in range(0, n_images, batch_images)]


@dataclass
class _PendingBatch:
    batch_no: int
    images: list[LoadedImage]
    results: dict[int, SaliencyResult]
    futures: dict[int, tuple[Future, tuple[dict[str, Any], dict[str, str]]]]
    gt_classes: dict[int, int]
    saliency_seconds: float
    computed: set[int]
    mismatched: dict[int, str] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)  # saliency failed: why
    metric_seconds: dict[int, dict[str, float]] = field(default_factory=dict)  # per image: model metric -> s


@dataclass
class _Run:
    """The per-rank state of :func:`localise_dataset`."""

    data: EvaluationSet
    pipeline: Pipeline
    figures: int
    scoremaps_dir: str | None
    cache: SaliencyCache | None
    executor: Executor
    records_dir: Path
    on_batch: Callable[[list[ImageRecord], dict[int, SaliencyResult]], None] | None

    def start_batch(self, batch_no: int, images: Sequence[LoadedImage]) -> _PendingBatch:
        """Saliency for the readable images of a batch, the states of the metrics that need the
        model, then hand segmentation to the executor."""
        data, pipe = self.data, self.pipeline
        mismatched: dict[int, str] = {}
        for im in images:
            reason = _size_mismatch(im, data.ground_truth[im.image_id]) if im.error is None else None
            if reason:
                mismatched[im.index] = reason
        ok = [im for im in images if im.error is None and im.index not in mismatched]
        gt_classes = {im.index: data.synsets.index(data.ground_truth[im.image_id].label) for im in ok}
        start = time.perf_counter()
        results: dict[int, SaliencyResult] = {}
        failed: dict[int, str] = {}
        todo = []
        for im in ok:
            hit = None
            if self.cache:
                hit = self.cache.get(im.image_id, im.content_sha256, [gt_classes[im.index]],
                                     _resized(im).shape[:2], pipe.crops.top_k)
            if hit is None:
                todo.append(im)
            else:
                results[im.index] = hit
        if todo:
            try:
                computed = pipe.saliency(todo, [[gt_classes[im.index]] for im in todo], len(data.synsets))
            except (ModelOutputError, SaliencyContractError):
                raise  # the model's or the method's fault, not the images': stop the run
            except Exception as err:  # a method failing on these images: recorded, the run goes on
                reason = f"saliency ({method_label(pipe.method)}): {type(err).__name__}: {err}"
                log.exception("saliency failed on %s", ", ".join(im.image_id for im in todo))
                failed.update({im.index: reason for im in todo})
                computed = []
            for im, res in zip(todo, computed):
                if not np.isfinite(res.maps).all():
                    failed[im.index] = (f"saliency ({method_label(pipe.method)}): the maps have NaN or infinite "
                                        "values")
                    continue
                results[im.index] = res
                if self.cache:
                    self.cache.put(im.image_id, im.content_sha256, [gt_classes[im.index]], res)
        # seconds of saliency computation per computed image; images read from the cache get 0
        saliency_seconds = (time.perf_counter() - start) / max(1, len(todo))
        futures = {}
        metric_seconds: dict[int, dict[str, float]] = {}
        model_metrics = [e for e in pipe.evaluators if e.needs_model]
        for im in ok:
            if im.index in failed:
                continue
            res = results[im.index]
            sample = MapSample(im.image_id, data.ground_truth[im.image_id], im.original_size,
                               [data.synsets.wnid(int(c)) for c in res.classes], res.maps, _resized(im),
                               classes=[int(c) for c in res.classes])
            model_states, metric_seconds[im.index] = model_metric_states(model_metrics,
                                                                          replace(sample, classifier=pipe.classifier))
            futures[im.index] = (self.executor.submit(image_outputs, pipe.extractor, pipe.evaluators, sample,
                                                      self.scoremaps_dir), model_states)
        return _PendingBatch(batch_no, list(images), results, futures, gt_classes, saliency_seconds,
                             {im.index for im in todo}, mismatched, failed, metric_seconds)

    def finish_batch(self, p: _PendingBatch) -> None:
        """Wait for the batch's boxes, write its part file, report it."""
        records: list[ImageRecord] = []
        kept: dict[int, SaliencyResult] = {}
        for im in p.images:
            timings = {"decode": im.decode_seconds}
            if im.error is not None:
                records.append(failed_record(im.index, im.image_id, im.error, timings))
                continue
            if im.index in p.mismatched:
                records.append(failed_record(im.index, im.image_id, p.mismatched[im.index], timings, SIZE_MISMATCH))
                continue
            if im.index in p.failed:
                records.append(failed_record(im.index, im.image_id, p.failed[im.index], timings))
                continue
            res = p.results[im.index]
            future, (model_states, model_failures) = p.futures[im.index]
            try:
                boxes = future.result()
            except (BrokenProcessPool, OutputError):  # not this image's fault: write nothing, stop the run
                raise
            except Exception as err:  # a segmentation crash is recorded, not fatal
                log.exception("segmentation failed on %s", im.image_id)
                records.append(failed_record(im.index, im.image_id, f"segmentation: {type(err).__name__}: {err}",
                                             timings))
                continue
            boxes.states.update(model_states)
            boxes.metric_failures.update(model_failures)
            timings.update(saliency=p.saliency_seconds if im.index in p.computed else 0.0, segmentation=boxes.seconds)
            timings.update(p.metric_seconds.get(im.index, {}))
            records.append(_record(im, res, boxes, p.gt_classes[im.index], self.pipeline.crops.top_k,
                                   self.data, timings))
            if im.index < self.figures:
                kept[im.index] = res
        write_part(self.records_dir, p.batch_no, records)
        if self.on_batch is not None:
            self.on_batch(records, kept)


def _resized(im: LoadedImage) -> np.ndarray:
    """The decoded image in the maps' frame (a readable image has one)."""
    if im.resized is None:
        raise ValueError(f"{im.image_id}: not decoded ({im.error})")
    return im.resized


def _size_mismatch(im: LoadedImage, annotation: ImageAnnotation) -> str | None:
    """Why the ground truth cannot be scored on this decoded image (another frame), or None."""
    if annotation.size is None or tuple(annotation.size) == tuple(im.original_size):
        return None
    (h, w), (gh, gw) = im.original_size, annotation.size
    return (f"decoded image is {w}x{h} but its ground truth records {gw}x{gh}: the boxes are in another "
            "frame, so the image is not scored")


def _record(im: LoadedImage, res: SaliencyResult, boxes: ImageBoxes, gt_class: int, top_k: int,
            data: EvaluationSet, timings: dict) -> ImageRecord:
    """Assemble an image's record: ``res.classes`` holds the top-k first, then the GT class if extra."""
    classes = [int(c) for c in res.classes]
    n_top = min(top_k, len(classes))
    gt_pos = classes.index(gt_class) if gt_class in classes else None
    h, w = im.original_size
    return ImageRecord(
        index=im.index,
        image_id=im.image_id,
        status=OK,
        height=h,
        width=w,
        synsets=[data.synsets.wnid(c) for c in classes[:n_top]],
        scores=[float(res.logits[c]) for c in classes[:n_top]],
        boxes=boxes.boxes[:n_top],
        fallbacks=boxes.fallbacks[:n_top],
        gt_known_box=boxes.boxes[gt_pos] if gt_pos is not None else None,
        gt_known_fallback=boxes.fallbacks[gt_pos] if gt_pos is not None else None,
        states=boxes.states,
        metric_failures=boxes.metric_failures,
        timings=timings,
    )


def localise_dataset(
    data: EvaluationSet,
    pipeline: Pipeline,
    engine: EngineSettings,
    run: RunSettings,
    records_dir: Path,
    info: DistInfo = DistInfo(),
    scoremaps_dir: str | None = None,
    on_batch: Callable[[list[ImageRecord], dict[int, SaliencyResult]], None] | None = None,
) -> dict[str, int]:
    """Process this rank's batches that have no valid part in ``records_dir``.

    ``scoremaps_dir``: export each image's ground-truth class map there (wsolevaluation's
    layout). ``on_batch`` receives each finished batch's records and, for images whose index
    is below ``run.figures``, their arrays (for figures). Returns counters: batches done
    now, batches skipped (already done), saliency cache hits and misses.
    """
    batches = global_batches(len(data.image_ids), engine.batch_images)
    done = set(read_parts(records_dir)) if run.resume else set()
    mine = [b for b in range(len(batches)) if info.owns(b) and b not in done]
    skipped = sum(1 for b in range(len(batches)) if info.owns(b) and b in done)
    log.info("rank %d/%d: %d batches to do, %d already done", info.rank, info.world_size, len(mine), skipped)

    device = pipeline.classifier.device
    cacheable = engine.cache and pipeline.method.cacheable  # objects and lambdas say nothing stable
    cache = SaliencyCache(engine.cache_dir, pipeline.saliency_namespace()) if cacheable else None

    items = [(i, data.image_ids[i], data.image_paths[data.image_ids[i]]) for b in mine for i in batches[b]]
    dataset = ImageDataset(items, partial(resize_shorter_side, size=pipeline.crops.resize), data.max_pixels,
                           keep_original=bool(pipeline.localisers))
    sampler, pos = [], 0
    for b in mine:
        sampler.append(list(range(pos, pos + len(batches[b]))))
        pos += len(batches[b])
    workers = engine.resolved_loader_workers(device)
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, num_workers=workers, collate_fn=collate_images,
        pin_memory=device.type == "cuda",  # page-locked images: asynchronous copies
        multiprocessing_context="spawn" if workers else None, persistent_workers=False,
        worker_init_fn=die_with_parent if workers else None,
    )
    segmentation_workers = engine.resolved_segmentation_workers(device, info.world_size)
    executor: Executor = (
        ProcessPoolExecutor(segmentation_workers, mp_context=multiprocessing.get_context("spawn"),
                            initializer=die_with_parent)
        if segmentation_workers > 0
        else InlineExecutor()
    )
    state = _Run(data, pipeline, run.figures, scoremaps_dir, cache, executor, records_dir, on_batch)
    pending: deque[_PendingBatch] = deque()
    try:
        for batch_no, batch in zip(mine, loader):
            pending.append(state.start_batch(batch_no, batch))
            while len(pending) > 1 or (pending and all(f.done() for f, _ in pending[0].futures.values())):
                state.finish_batch(pending.popleft())
        while pending:
            state.finish_batch(pending.popleft())
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
    return {"batches_done": len(mine), "batches_skipped": skipped, "cache_hits": cache.hits if cache else 0,
            "cache_misses": cache.misses if cache else 0}


def merge_records(records_dir: Path, data: EvaluationSet, batch_images: int) -> list[ImageRecord]:
    """All records of the run, in image order; a missing batch is an error naming it."""
    parts = read_parts(records_dir)
    expected = global_batches(len(data.image_ids), batch_images)
    missing = [b for b in range(len(expected)) if b not in parts]
    if missing:
        raise RuntimeError(f"{records_dir}: batches {missing[:10]} have no valid results; rerun with run.resume=true")
    records = [r for b in range(len(expected)) for r in parts[b]]
    if [r.image_id for r in records] != data.image_ids:
        raise RuntimeError(f"{records_dir}: the stored results do not match the evaluated images (another run?)")
    return records
