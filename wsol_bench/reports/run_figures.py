"""The figures of a localisation run, drawn from its records and maps (never recomputing saliency).

For the first ``count`` images of a run (in image order, those localised): per image,
``figures/<index>_<image_id>.png`` (the image with ground truth and guesses, the top-1 map
and its mask) and ``figures/<index>_<image_id>_saliency.png`` (the maps of every class); for
the run, ``figures/paper_figure2.png`` (images with the map of their top class) and
``figures/paper_figure3.png`` (image, map, seeds, mask, box). The maps come from a
callable (the arrays a run kept, or the saliency cache); the box extractor is re-run on
the top-1 map for the seeds and mask (cheap, deterministic).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from wsol_bench.data.images import read_rgb
from wsol_bench.data.sources import EvaluationSet
from wsol_bench.files import sha256_file
from wsol_bench.frames import resize_shorter_side
from wsol_bench.pipeline.records import OK, ImageRecord
from wsol_bench.saliency import SaliencyResult
from wsol_bench.saliency.cache import SaliencyCache
from wsol_bench.segmentation import BoxExtractor, localise_image

log = logging.getLogger(__name__)

MapsOf = Callable[[ImageRecord], SaliencyResult | None]
"""The saliency result of a record's image (in its resized frame), or ``None`` if unknown."""


def cached_maps(cache: SaliencyCache, data: EvaluationSet, resize: int, top_k: int) -> MapsOf:
    """Maps read from a run's saliency cache (the run's namespace), for :func:`write_run_figures`."""

    def maps_of(record: ImageRecord) -> SaliencyResult | None:
        path = data.image_paths[record.image_id]
        gt_class = data.synsets.index(data.ground_truth[record.image_id].label)
        frame = resize_shorter_side(np.zeros((record.height, record.width, 3), np.uint8), resize).shape[:2]
        return cache.get(record.image_id, sha256_file(path), [gt_class], frame, top_k)

    return maps_of


def write_run_figures(
    directory: Path, records: Sequence[ImageRecord], data: EvaluationSet, extractor: BoxExtractor,
    maps_of: MapsOf, resize: int, count: int,
) -> list[Path]:
    """Draw the run's figures for its first ``count`` localised images (see the module docstring)."""
    from wsol_bench.figures import save_figure
    from wsol_bench.figures.localisation import save_localisation_figure, score_guesses
    from wsol_bench.figures.paper import (
        ImageMap,
        SegmentationRow,
        class_caption,
        paper_figure2,
        paper_figure3,
    )
    from wsol_bench.figures.saliency import save_saliency_figure

    names = data.synsets.name
    written: list[Path] = []
    figure2, figure3 = [], []
    for record in [r for r in records if r.status == OK][:count]:
        result = maps_of(record)
        if result is None:
            log.warning("figures: no maps for %s (saliency cache off or emptied); not drawn", record.image_id)
            continue
        image = read_rgb(data.image_paths[record.image_id], data.max_pixels)
        resized = resize_shorter_side(image, resize)
        truth = data.ground_truth[record.image_id]
        top1 = localise_image(extractor, resized, result.maps[:1]).localisations[0]
        guesses = score_guesses([b.labelled(s) for s, b in zip(record.synsets, record.boxes)], truth.boxes,
                                record.scores[: len(record.boxes)])
        stem = directory / f"{record.index:05d}_{record.image_id}"
        written.append(save_localisation_figure(
            stem.with_suffix(".png"), image, truth.boxes, guesses, names=names, saliency=result.maps[0],
            mask=top1.mask, title=f"{record.image_id}: ground truth {names(truth.label)}"))
        class_names = [names(data.synsets.wnid(int(c))) for c in result.classes]
        written.append(save_saliency_figure(f"{stem}_saliency.png", resized, result, class_names))
        caption = class_caption(names(record.synsets[0]), record.scores[0])
        figure2.append(ImageMap(resized, result.maps[0], caption))
        scaled_truth = tuple(b.scaled(image.shape[:2], resized.shape[:2]) for b in truth.boxes)
        figure3.append(SegmentationRow(resized, result.maps[0], top1.seeds, top1.mask, top1.box,
                                       f"{record.image_id}: {caption.replace(chr(10), ', ')}", scaled_truth))
    if figure2:
        written.append(save_figure(paper_figure2(figure2, title="Image-specific class saliency maps of the "
                                                 "top-1 class (Figure 2 of Simonyan et al. 2014)"),
                                   directory / "paper_figure2.png"))
        written.append(save_figure(paper_figure3(figure3, title="Weakly supervised localisation of the top-1 class "
                                                 "(Figure 3 of Simonyan et al. 2014)"),
                                   directory / "paper_figure3.png"))
    return written


def comparison_figure(
    path: Path, runs: Sequence[tuple[str, EvaluationSet, Mapping[str, ImageRecord], MapsOf, int]], count: int,
) -> Path:
    """One row per image (the first ``count`` localised in every run), one column per run:
    each run's map of the image's ground-truth class. ``runs``: ``(label, data, records by
    image id, maps_of, resize)``."""
    from wsol_bench.figures import save_figure
    from wsol_bench.figures.compare import compare_figure

    _, data0, _, _, resize0 = runs[0]
    common = [i for i in data0.image_ids
              if all(i in recs and recs[i].status == OK for _, _, recs, _, _ in runs)][:count]
    if not common:
        raise ValueError("the runs have no localised image in common")
    images, maps, captions = [], [], []
    for image_id in common:
        truth = data0.ground_truth[image_id]
        resized = resize_shorter_side(read_rgb(data0.image_paths[image_id], data0.max_pixels), resize0)
        row: dict[str, np.ndarray | None] = {}
        for label, data, recs, maps_of, _ in runs:
            result = maps_of(recs[image_id])
            gt_class = data.synsets.index(truth.label)
            row[label] = None if result is None else result.maps[list(result.classes).index(gt_class)]
        images.append(resized)
        maps.append(row)
        captions.append(f"{image_id}: ground truth {data0.synsets.name(truth.label)}")
    fig = compare_figure(images, [r[0] for r in runs], maps, captions,
                         title="Saliency maps of the ground-truth class, by run")
    return save_figure(fig, path)


__all__ = ["cached_maps", "comparison_figure", "write_run_figures"]
