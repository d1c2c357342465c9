"""The benchmark loop: saliency and boxes for every image of an evaluation set.

* **Sharding** (torchrun): the images are cut into global batches of
  ``saliency.batch_images`` consecutive images; batch ``b`` belongs to rank
  ``b % world_size``. Every rank therefore sees the same batches, with the same
  composition, as a single process does, so the results are identical row for row.
* **Resume**: each finished batch is written atomically as one part file
  (:mod:`wsol_bench.localisation.store`); a restarted run skips the batches whose
  part is valid and redoes the rest.
* **Overlap**: saliency (GPU or CPU) of batch ``n + 1`` runs while a pool of
  ``segmentation.workers`` processes segments batch ``n``; with 0 workers the same
  code segments in the main process.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from wsol_bench.config import DatasetConfig, ModelConfig, RunConfig, SaliencyConfig, SegmentationConfig
from wsol_bench.data.images import ImageDataset, LoadedImage, collate_images
from wsol_bench.data.sources import EvaluationSet
from wsol_bench.data.synsets import SynsetTable
from wsol_bench.localisation.boxes_from_maps import ClassBoxes, boxes_from_maps
from wsol_bench.localisation.records import ImageRecord, failed_record
from wsol_bench.localisation.saliency_cache import SaliencyCache
from wsol_bench.localisation.store import read_parts, write_part
from wsol_bench.models import Classifier, build_classifier, resolve_device
from wsol_bench.saliency.crops import resize_shorter_side
from wsol_bench.saliency.gradient import SaliencyResult, image_saliency
from wsol_bench.segmentation import Segmenter, build_segmenter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Shard:
    """This process's place in a (torchrun) job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> "Shard":
        return cls(
            int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))
        )

    def owns(self, batch: int) -> bool:
        return batch % self.world_size == self.rank


@dataclass(frozen=True)
class RunSettings:
    dataset: DatasetConfig
    model: ModelConfig
    saliency: SaliencyConfig
    segmentation: SegmentationConfig
    run: RunConfig


class InlineExecutor(Executor):
    """Runs each task at once in the calling process (``segmentation.workers=0``)."""

    def submit(self, fn: Callable, /, *args, **kwargs) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as err:  # delivered to whoever reads the future
            future.set_exception(err)
        return future


def _limit_worker_threads() -> None:
    import cv2
    from threadpoolctl import threadpool_limits

    cv2.setNumThreads(1)
    threadpool_limits(1)


def global_batches(n_images: int, batch_images: int) -> list[list[int]]:
    """Image positions ``0..n-1`` cut into consecutive batches (the unit of sharding and resume)."""
    return [list(range(s, min(s + batch_images, n_images))) for s in range(0, n_images, batch_images)]


def localise_dataset(
    data: EvaluationSet,
    settings: RunSettings,
    records_dir: Path,
    shard: Shard = Shard(),
    on_batch: Callable[[list[ImageRecord], dict[int, "BatchArtefacts"]], None] | None = None,
) -> dict[str, int]:
    """Process this rank's batches that have no valid part in ``records_dir``.

    ``on_batch`` receives each finished batch's records and, for images whose index is
    below ``run.figures``, their maps and masks (for figures). Returns counters:
    batches done now, batches skipped (already done), saliency cache hits.
    """
    sal, seg = settings.saliency, settings.segmentation
    batches = global_batches(len(data.image_ids), sal.batch_images)
    done = set(read_parts(records_dir)) if settings.run.resume else set()
    mine = [b for b in range(len(batches)) if shard.owns(b) and b not in done]
    skipped = sum(1 for b in range(len(batches)) if shard.owns(b) and b in done)
    log.info("rank %d/%d: %d batches to do, %d already done", shard.rank, shard.world_size, len(mine), skipped)

    device = resolve_device(settings.model.device)
    if device.type == "cpu" and shard.world_size > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // shard.world_size))
    classifier = build_classifier(settings.model)
    segmenter = build_segmenter(seg)
    cache = SaliencyCache(sal.cache_dir, saliency_namespace(classifier, sal)) if sal.cache else None

    items = [(i, data.image_ids[i], data.image_paths[data.image_ids[i]]) for b in mine for i in batches[b]]
    dataset = ImageDataset(items, partial(resize_shorter_side, size=sal.resize))
    sampler, pos = [], 0
    for b in mine:
        sampler.append(list(range(pos, pos + len(batches[b]))))
        pos += len(batches[b])
    workers = settings.dataset.num_workers
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, num_workers=workers, collate_fn=collate_images,
        multiprocessing_context="spawn" if workers else None, persistent_workers=False,
    )
    executor: Executor = (
        ProcessPoolExecutor(seg.workers, mp_context=multiprocessing.get_context("spawn"), initializer=_limit_worker_threads)
        if seg.workers > 0
        else InlineExecutor()
    )
    pending: deque = deque()
    progress = tqdm(total=len(items), desc=f"rank {shard.rank}", disable=not settings.run.progress, unit="img")
    try:
        for batch_no, batch in zip(mine, loader):
            pending.append(_start_batch(batch_no, batch, data, classifier, segmenter, cache, executor, settings))
            while len(pending) > 1 or (pending and _ready(pending[0])):
                _finish_batch(pending.popleft(), settings, data.synsets, records_dir, on_batch, progress)
        while pending:
            _finish_batch(pending.popleft(), settings, data.synsets, records_dir, on_batch, progress)
    finally:
        progress.close()
        executor.shutdown(wait=True, cancel_futures=True)
    return {"batches_done": len(mine), "batches_skipped": skipped, "cache_hits": cache.hits if cache else 0,
            "cache_misses": cache.misses if cache else 0}


def prepare_records_dir(records_dir: Path, image_ids: list[str], batch_images: int, resume: bool) -> None:
    """Check that ``records_dir`` may receive this run's parts, and record what they mean.

    A fresh run refuses a folder that already holds results; a resumed run refuses one
    whose parts were cut from other images or another batch size (its part numbers would
    name other images). Call on rank 0 before any rank starts.
    """
    manifest = records_dir / "manifest.json"
    identity = {"batch_images": batch_images,
                "image_ids_sha256": hashlib.sha256("\n".join(image_ids).encode()).hexdigest()}
    if any(records_dir.glob("part-*.jsonl")):
        if not resume:
            raise FileExistsError(f"{records_dir} already holds results: pass run.resume=true to continue that run")
        found = json.loads(manifest.read_text()) if manifest.is_file() else None
        if found != identity:
            raise ValueError(f"{manifest}: these results were made for other images or another "
                             f"saliency.batch_images ({found} != {identity}); resume with the same settings")
    records_dir.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps(identity) + "\n")


def saliency_namespace(classifier: Classifier, sal: SaliencyConfig) -> dict:
    """What, besides the image, a saliency map depends on (the cache key)."""
    return {"model": classifier.name, "weights": classifier.weights_id, "method": sal.method,
            "resize": sal.resize, "crop": sal.crop, "crops": sal.crops, "top_k": sal.top_k}


@dataclass
class BatchArtefacts:
    """Arrays kept for the figures of one image."""

    resized: np.ndarray
    saliency: SaliencyResult
    boxes: ClassBoxes


@dataclass
class _PendingBatch:
    batch_no: int
    images: list[LoadedImage]
    results: dict[int, SaliencyResult]
    futures: dict[int, Future]
    gt_classes: dict[int, int]
    saliency_seconds: float
    computed: set[int]


def _ready(p: _PendingBatch) -> bool:
    return all(f.done() for f in p.futures.values())


def _start_batch(
    batch_no: int,
    images: Sequence[LoadedImage],
    data: EvaluationSet,
    classifier: Classifier,
    segmenter: Segmenter,
    cache: SaliencyCache | None,
    executor: Executor,
    settings: RunSettings,
) -> _PendingBatch:
    """Saliency for the readable images of a batch, then hand segmentation to the executor."""
    sal = settings.saliency
    ok = [im for im in images if im.error is None]
    gt_classes = {im.index: data.synsets.index(data.ground_truth[im.image_id].label) for im in ok}
    start = time.perf_counter()
    results: dict[int, SaliencyResult] = {}
    todo = []
    for im in ok:
        hit = cache.get(im.image_id, data.image_paths[im.image_id], [gt_classes[im.index]]) if cache else None
        if hit is None:
            todo.append(im)
        else:
            results[im.index] = hit
    if todo:
        computed = image_saliency(
            classifier, [im.resized for im in todo], crop=sal.crop, crops=sal.crops, top_k=sal.top_k,
            extra_classes=[[gt_classes[im.index]] for im in todo],
        )
        for im, res in zip(todo, computed):
            results[im.index] = res
            if cache:
                cache.put(im.image_id, data.image_paths[im.image_id], [gt_classes[im.index]], res)
    # seconds of saliency computation per computed image; images read from the cache get 0
    saliency_seconds = (time.perf_counter() - start) / max(1, len(todo))
    computed = {im.index for im in todo}
    futures = {
        im.index: executor.submit(
            boxes_from_maps, segmenter, im.resized, results[im.index].maps, im.original_size,
            im.index < settings.run.figures,
        )
        for im in ok
    }
    return _PendingBatch(batch_no, list(images), results, futures, gt_classes, saliency_seconds, computed)


def _finish_batch(
    p: _PendingBatch,
    settings: RunSettings,
    synsets: SynsetTable,
    records_dir: Path,
    on_batch: Callable | None,
    progress: tqdm,
) -> None:
    """Wait for the batch's boxes, write its part file, report it."""
    records: list[ImageRecord] = []
    artefacts: dict[int, BatchArtefacts] = {}
    for im in p.images:
        timings = {"decode": im.decode_seconds}
        if im.error is not None:
            records.append(failed_record(im.index, im.image_id, im.error, timings))
            continue
        res = p.results[im.index]
        try:
            boxes = p.futures[im.index].result()
        except BrokenProcessPool:  # a dead worker is not this image's fault: write nothing, stop
            raise
        except Exception as err:  # a segmentation crash is recorded, not fatal
            log.exception("segmentation failed on %s", im.image_id)
            records.append(failed_record(im.index, im.image_id, f"segmentation: {type(err).__name__}: {err}", timings))
            continue
        timings.update(saliency=p.saliency_seconds if im.index in p.computed else 0.0, segmentation=boxes.seconds)
        records.append(_record(im, res, boxes, p.gt_classes[im.index], settings.saliency.top_k, synsets, timings))
        if im.index < settings.run.figures:
            artefacts[im.index] = BatchArtefacts(im.resized, res, boxes)
    write_part(records_dir, p.batch_no, records)
    if on_batch is not None:
        on_batch(records, artefacts)
    progress.update(len(p.images))


def _record(
    im: LoadedImage, res: SaliencyResult, boxes: ClassBoxes, gt_class: int, top_k: int, synsets: SynsetTable,
    timings: dict,
) -> ImageRecord:
    """Assemble an image's record: ``res.classes`` holds the top-k first, then the GT class if extra."""
    classes = [int(c) for c in res.classes]
    n_top = min(top_k, len(classes))
    gt_pos = classes.index(gt_class) if gt_class in classes else None
    h, w = im.original_size
    return ImageRecord(
        index=im.index,
        image_id=im.image_id,
        status="ok",
        height=h,
        width=w,
        synsets=[synsets.wnid(c) for c in classes[:n_top]],
        scores=[float(res.logits[c]) for c in classes[:n_top]],
        boxes=boxes.boxes[:n_top],
        fallbacks=boxes.fallbacks[:n_top],
        gt_known_box=boxes.boxes[gt_pos] if gt_pos is not None else None,
        gt_known_fallback=boxes.fallbacks[gt_pos] if gt_pos is not None else None,
        timings=timings,
    )
