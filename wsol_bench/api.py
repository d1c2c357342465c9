"""The Python API: whole runs on data sets, one image, ground truth, and scoring, without Hydra.

    import wsol_bench
    result = wsol_bench.run("path/to/images", ground_truth="LOC_val_solution.csv", method="gradcam")
    result.metrics["gt_known_loc_error"], result.per_image, result.predictions, result.maps(image_id)

    one = wsol_bench.localise("efficientnet_lite0", "cat.jpg", method="gradient", segmenter="graphcut")
    one.names, one.scores, one.boxes, one.show()

* :func:`run`: the CLI's localisation run (the same engine: sharded over ``processes`` ranks,
  resumable, every metric) on a data set, returning a :class:`RunResult`;
* :func:`localise`: one image, returning a :class:`Localised`;
* :func:`load_ground_truth`, :func:`evaluate` (prediction tables, the devkit's rules),
  :func:`score_maps` (wsolevaluation score maps), :func:`overlay` (a map and boxes drawn
  over an image).

Conventions: boxes are 0-based inclusive pixels of the original image; classes are WNIDs
(``n02123045``) in sorted-WNID order for the 1000 ILSVRC classes, with their names beside
them; maps are float32, non-negative, in original-image pixels unless a frame is asked for
(``"resized"``: shorter side ``tta.resize``; ``"wsol"``: clovaai/wsolevaluation's 224 x 224
in [0, 1]). A method may be a name, a configured method, a captum or pytorch-grad-cam
object or a function (:func:`wsol_bench.saliency.as_method`).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from wsol_bench.boxes import Box, ImageAnnotation, Size
from wsol_bench.data.images import read_rgb, to_rgb
from wsol_bench.data.sources import DatasetSpec, EvaluationSet, load_evaluation_set
from wsol_bench.data.synsets import SynsetTable, default_synsets
from wsol_bench.frames import map_to_original, resize_shorter_side, wsol_scoremap
from wsol_bench.metrics import Evaluator, evaluator
from wsol_bench.models import Classifier, ModelSpec, build_classifier, wrap_module
from wsol_bench.pipeline.run import SALIENCY_NAMESPACE, LocalisationPlan, run_localisation
from wsol_bench.pipeline.settings import EngineSettings, RunSettings
from wsol_bench.saliency import CropSettings, SaliencyMethod, SaliencyResult, as_method, image_saliency, saliency_method
from wsol_bench.segmentation import BoxExtractor, Localisation, box_extractor, localise_image

MapFrame = str  # "original" | "resized" | "wsol"
FRAMES = ("original", "resized", "wsol")
DEFAULT_METRICS = ("ilsvrc", "maxboxacc", "pointing_game")


def as_classifier(model: Classifier | ModelSpec | str | torch.nn.Module, **module_options: Any) -> Classifier:
    """A :class:`Classifier` from a classifier, a :class:`ModelSpec`, a model name
    (``"efficientnet_lite0"``, ``"resnet50"``, ...) or a plain ``nn.Module`` (wrapped with
    :func:`wsol_bench.models.wrap_module`; ``module_options``: ``mean``, ``std``, ``name``,
    ``target_layer``)."""
    if isinstance(model, Classifier):
        return model
    if isinstance(model, str):
        model = ModelSpec(name=model)
    if isinstance(model, ModelSpec):
        return build_classifier(model)
    if isinstance(model, torch.nn.Module):
        return wrap_module(model, **module_options)
    raise TypeError(f"model: expected a Classifier, ModelSpec, model name or nn.Module, got {type(model).__name__}")


def as_saliency_method(method: object) -> SaliencyMethod:
    """A method from a name (``"gradcam"``) or anything :func:`~wsol_bench.saliency.as_method` takes."""
    return saliency_method(method) if isinstance(method, str) else as_method(method)


def _frame_map(saliency: np.ndarray, frame: MapFrame, original: Size) -> np.ndarray:
    """A map of the resized frame in ``frame``."""
    if frame == "resized":
        return saliency
    if frame == "original":
        return map_to_original(saliency, original)
    if frame == "wsol":
        return wsol_scoremap(saliency)
    raise ValueError(f"frame={frame!r}: must be one of {', '.join(FRAMES)}")


def _class_name(synsets: SynsetTable, cls: str) -> str:
    return synsets.name(cls) if cls in synsets else cls


@dataclass
class Localised:
    """One image's result (:func:`localise`).

    ``classes``: WNIDs (class indices as strings for a model whose outputs are not the
    ILSVRC classes), best first, then the classes asked for; ``names``: their names;
    ``scores``: mean logits over the crops; ``boxes``: one per class, original-image pixels
    (0-based inclusive), labelled with the class; ``maps``: ``(K, H, W)`` float32 saliency
    maps in original-image pixels; ``localisations``: the extractor's results in the resized
    frame (masks, seeds, fallbacks); ``image``: the image as read (``H x W x 3`` uint8 RGB);
    ``resized_maps``: the maps in the resized frame.
    """

    classes: list[str]
    names: list[str]
    class_indices: list[int]
    scores: list[float]
    boxes: list[Box]
    maps: np.ndarray
    localisations: list[Localisation]
    image: np.ndarray
    resized_maps: np.ndarray

    def _rank(self, cls: str | int) -> int:
        key = str(cls)
        if key in self.classes:
            return self.classes.index(key)
        if isinstance(cls, int) and cls in self.class_indices:
            return self.class_indices.index(cls)
        raise KeyError(f"class {cls!r} has no map here (classes: {', '.join(self.classes)}); ask for it with "
                       "localise(..., classes=[...])")

    def map_of(self, cls: str | int, frame: MapFrame = "original") -> np.ndarray:
        """The map of class ``cls`` (a WNID or an index) in ``frame``."""
        return _frame_map(self.resized_maps[self._rank(cls)], frame, self.image.shape[:2])

    def scoremaps(self) -> np.ndarray:
        """``(K, 224, 224)`` float64 maps in wsolevaluation's frame (stretched, in [0, 1])."""
        return np.stack([wsol_scoremap(m) for m in self.resized_maps])

    def table(self) -> pd.DataFrame:
        """One row per class: rank, WNID, name, logit, box."""
        return pd.DataFrame({"rank": range(1, len(self.classes) + 1), "synset": self.classes, "name": self.names,
                             "score": self.scores, "box": [b.coords for b in self.boxes]})

    def show(self, cls: str | int | None = None, boxes: str = "all") -> Figure:
        """The map of ``cls`` (default: the top class) over the image, with the boxes (``"all"``
        classes' or ``"one"``: that class's), labelled by name."""
        k = 0 if cls is None else self._rank(cls)
        chosen = range(len(self.boxes)) if boxes == "all" else [k]
        from wsol_bench.figures.overlay import overlay

        return overlay(self.image, self.resized_maps[k], [self.boxes[i] for i in chosen],
                       [f"{i + 1}. {self.names[i]}" for i in chosen], title=f"map of {self.names[k]}")


def localise(
    model: Classifier | ModelSpec | str | torch.nn.Module,
    image: Any,
    method: object = "gradient",
    segmenter: BoxExtractor | str = "graphcut",
    top_k: int = 5,
    crops: int | CropSettings = 10,
    classes: Sequence[int | str] = (),
    synsets: SynsetTable | None = None,
    normalisation: tuple[Sequence[float], Sequence[float]] | None = None,
) -> Localised:
    """Saliency maps and boxes of ``image``'s top-``top_k`` classes, then ``classes`` (WNIDs
    or indices, e.g. the ground truth's).

    ``image``: a path, a PIL image, an ``H x W x 3`` uint8 array, or a tensor (``(3, H, W)``
    uint8, or float RGB in ``[0, 1]``); a float tensor outside ``[0, 1]`` (a normalised one) is
    refused unless ``normalisation=(mean, std)`` says how to undo it. ``method``: a name, a
    configured method, a captum or pytorch-grad-cam object or a function
    (:func:`~wsol_bench.saliency.as_method`). ``segmenter``: a name or a configured
    extractor. ``crops``: 10, 2 or 1 crops of a 224 window of the image resized to shorter
    side 256, or full :class:`CropSettings`. ``synsets``: the class table (default: the 1000
    ILSVRC classes in sorted-WNID order).
    """
    classifier = as_classifier(model)
    method = as_saliency_method(method)
    segmenter = box_extractor(segmenter) if isinstance(segmenter, str) else segmenter
    settings = crops if isinstance(crops, CropSettings) else CropSettings(crops=int(crops), top_k=top_k)
    if normalisation is not None:
        if not isinstance(image, torch.Tensor):
            raise TypeError("normalisation=(mean, std) undoes a normalised tensor; the image is not a tensor")
        mean, std = (torch.as_tensor(v, dtype=torch.float32).view(-1, 1, 1) for v in normalisation)
        image = image.detach().float().cpu() * std + mean
    rgb = to_rgb(image)
    table = synsets or default_synsets()
    extra = [table.index(c) if isinstance(c, str) else int(c) for c in classes]
    resized = resize_shorter_side(rgb, settings.resize)
    [result] = image_saliency(method, classifier, [resized], settings, extra_classes=[extra])
    indices = [int(c) for c in result.classes]
    wnids = [table.wnid(c) if len(result.logits) == len(table) else str(c) for c in indices]
    located = localise_image(segmenter, resized, result.maps, rgb.shape[:2])
    maps = np.stack([map_to_original(m, rgb.shape[:2]) for m in result.maps])
    return Localised(wnids, [_class_name(table, w) for w in wnids], indices,
                     [float(result.logits[c]) for c in indices],
                     [box.labelled(w) for box, w in zip(located.boxes, wnids)], maps, located.localisations, rgb,
                     result.maps)


# ----------------------------------------------------------------------------- ground truth


def load_ground_truth(source: str | Path, image_ids: Sequence[str] | None = None,
                      synsets: SynsetTable | None = None) -> dict[str, ImageAnnotation]:
    """Ground truth by image id (``ImageAnnotation``: boxes in original pixels, labels as WNIDs)
    from a folder of ILSVRC XML files, a ``LOC_val_solution.csv``, or a download's root (the
    Kaggle or the devkit layout, as ``dataset.root``). ``image_ids``: only these (an id
    without ground truth is an error naming it)."""
    from wsol_bench.data.ground_truth import read_annotation_dir, read_solution_csv, select

    path = Path(source)
    if path.is_file():
        truth = read_solution_csv(path, synsets)
    elif path.is_dir() and any(path.glob("*.xml")):
        return read_annotation_dir(path, image_ids, synsets)
    elif path.is_dir():
        data = load_evaluation_set(DatasetSpec(root=str(path)), need_images=False)
        truth = data.ground_truth
    else:
        raise FileNotFoundError(f"{path}: neither a ground-truth file nor a folder")
    return dict(truth) if image_ids is None else select(truth, list(image_ids), str(path))


def _ground_truth(ground_truth: Mapping[str, ImageAnnotation] | str | Path) -> Mapping[str, ImageAnnotation]:
    return load_ground_truth(ground_truth) if isinstance(ground_truth, (str, Path)) else ground_truth


# ----------------------------------------------------------------------------- scoring


def evaluate(
    predictions: pd.DataFrame | str | Path,
    ground_truth: Mapping[str, ImageAnnotation] | str | Path,
    iou_threshold: float = 0.5,
    max_guesses: int = 5,
    missing: str = "error",
) -> dict[str, Any]:
    """The devkit's figures for a long-format prediction table (``image_id, rank, synset,
    xmin, ymin, xmax, ymax``; or such a CSV file) against ground truth (a mapping, or what
    :func:`load_ground_truth` reads), as ``task=evaluate`` computes them.

    The table is checked as strictly as the CSV reader (ranks, coordinates, WNIDs: a class
    name is an error with a hint). Guesses for images without ground truth are an error
    naming them. Ground-truth images without any guess, by ``missing``: ``"error"``
    (default, naming how many and the first), ``"wrong"`` (each an error, the devkit's rule)
    or ``"skip"`` (only the predicted images are scored). Returns ``metrics.json``'s keys.
    """
    from wsol_bench.data.predictions import check_predictions_frame, read_predictions_csv
    from wsol_bench.metrics.ilsvrc import IlsvrcLocalisation
    from wsol_bench.metrics.scoring import score_predictions

    if isinstance(predictions, (str, Path)):
        table = read_predictions_csv(predictions)
        source = str(predictions)
    else:
        table = check_predictions_frame(predictions)
        source = "predictions"
    ilsvrc = IlsvrcLocalisation(iou_threshold=iou_threshold, max_guesses=max_guesses)
    summary, _ = score_predictions(table, _ground_truth(ground_truth), ilsvrc, missing, source)
    return summary


def score_maps(
    maps: str | Path | Mapping[str, np.ndarray],
    ground_truth: Mapping[str, ImageAnnotation] | str | Path,
    metrics: Sequence[str | Evaluator] = ("maxboxacc", "pointing_game"),
    original_sizes: Mapping[str, Size] | None = None,
    missing: str = "error",
) -> dict[str, Any]:
    """MaxBoxAcc / MaxBoxAccV2 and the pointing game (or other map-reading ``metrics``) of
    wsolevaluation score maps: a folder of ``<image_id>.npy`` (with its ``metadata/``, as a
    run's ``run.save_maps`` writes), or arrays by image id (224 x 224 in [0, 1], the
    ground-truth class's map, used as they are). ``missing`` as :func:`evaluate`; an
    image's size comes from ``original_sizes``, the metadata or the ground truth (sources
    that disagree are an error). Returns the metrics' figures."""
    from wsol_bench.metrics.scoring import score_maps as score

    evaluators = [evaluator(m) if isinstance(m, str) else m for m in metrics]
    return score(maps, _ground_truth(ground_truth), evaluators, original_sizes, missing).figures


def overlay(image: Any, saliency: np.ndarray | None = None, boxes: Sequence[Box] = (),
            labels: Sequence[str] | None = None, title: str | None = None, alpha: float = 0.5) -> Figure:
    """A figure of ``image`` (anything :func:`localise` reads) under its saliency map (any
    frame) in a perceptual colour map, with ``boxes`` (original pixels) and their labels."""
    from wsol_bench.figures.overlay import overlay as draw

    return draw(to_rgb(image), saliency, boxes, labels, title, alpha)


# ----------------------------------------------------------------------------- runs


def _evaluation_set(data: Any, ground_truth: Mapping[str, ImageAnnotation] | str | Path | None,
                    limit: int | None) -> tuple[DatasetSpec, EvaluationSet]:
    """The data set of :func:`run` (see there)."""
    if isinstance(data, DatasetSpec):
        spec = data
    elif isinstance(data, Mapping):
        spec = DatasetSpec(**{"name": "custom", **data})
    elif isinstance(data, (str, Path)):
        path = Path(data)
        if ground_truth is None:
            spec = DatasetSpec(root=str(path))
        elif not isinstance(ground_truth, (str, Path)):
            from wsol_bench.data.sources import list_images

            return _listed_set(list(list_images(path).values()), ground_truth, limit)
        elif Path(ground_truth).is_dir():
            spec = DatasetSpec(images=str(path), annotations=str(ground_truth))
        else:
            spec = DatasetSpec(images=str(path), solution_csv=str(ground_truth))
    elif isinstance(data, Sequence):
        if ground_truth is None:
            raise ValueError("run(data=[image paths]) needs ground_truth= (a mapping, an XML folder or a CSV)")
        return _listed_set([Path(p) for p in data], _ground_truth(ground_truth), limit)
    else:
        raise TypeError(f"data: expected a folder, a list of image paths, a DatasetSpec or a mapping of dataset "
                        f"settings, got {type(data).__name__}")
    if limit is not None:
        spec = replace(spec, limit=limit)
    from wsol_bench.tasks.factory import resolve_demo

    return spec, load_evaluation_set(resolve_demo(spec), lenient=True)


def _listed_set(paths: Sequence[Path], ground_truth: Mapping[str, ImageAnnotation],
                limit: int | None) -> tuple[DatasetSpec, EvaluationSet]:
    """An evaluation set of exactly these image files (ids: the file names without extension)."""
    paths = list(paths)[:limit] if limit else list(paths)
    ids = [p.stem for p in paths]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise ValueError(f"two files with the image id {repeated[0]!r}: ids are file names without extension")
    absent = [i for i in ids if i not in ground_truth]
    if absent:
        raise ValueError(f"{len(absent)} images have no ground truth (first: {', '.join(absent[:5])})")
    spec = DatasetSpec(name="listed")
    data = EvaluationSet(ids, {i: ground_truth[i] for i in ids}, {i: p.resolve() for i, p in zip(ids, paths)},
                         default_synsets(), None, "the given ground truth", spec=spec)
    return spec, data


@dataclass
class RunResult:
    """A finished :func:`run`: ``metrics`` (``metrics.json``), ``per_image`` and ``predictions``
    (DataFrames, classes as WNIDs with their names: ``name`` beside ``synset``, ``<column>_name``
    beside each class column of ``per_image.csv``), ``run_dir``, and each image's maps on
    request (:meth:`maps`, read back from the saliency cache: nothing is recomputed)."""

    run_dir: Path
    metrics: dict[str, Any]
    plan: LocalisationPlan = field(repr=False)
    data: EvaluationSet = field(repr=False)

    @cached_property
    def per_image(self) -> pd.DataFrame:
        table = pd.read_csv(self.run_dir / "per_image.csv")
        for column in [c for c in table.columns if c in ("label", "top1_synset") or c.startswith("synset_")]:
            names = [_class_name(self.data.synsets, str(s)) if isinstance(s, str) else "" for s in table[column]]
            table.insert(table.columns.get_loc(column) + 1, f"{column}_name", names)
        return table

    @cached_property
    def predictions(self) -> pd.DataFrame:
        table = pd.read_csv(self.run_dir / "predictions.csv")
        table.insert(table.columns.get_loc("synset") + 1, "name",
                     [_class_name(self.data.synsets, str(s)) for s in table["synset"]])
        return table

    def _saliency(self, image_id: str) -> SaliencyResult:
        from wsol_bench.files import sha256_file
        from wsol_bench.saliency.cache import SaliencyCache

        if image_id not in self.data.image_paths:
            raise KeyError(f"{image_id!r} is not an image of this run")
        namespace = self.run_dir / "records" / SALIENCY_NAMESPACE
        if not self.plan.engine.cache or not namespace.is_file():
            raise ValueError("the run kept no saliency cache (engine.cache=False, or a method whose results are "
                             "not cached): its maps are gone; rerun with the cache on")
        cache = SaliencyCache(self.plan.engine.cache_dir, json.loads(namespace.read_text(encoding="utf-8")))
        truth = self.data.ground_truth[image_id]
        original = read_rgb(self.data.image_paths[image_id], self.data.max_pixels)
        frame = resize_shorter_side(original, self.plan.crops.resize).shape[:2]
        found = cache.get(image_id, sha256_file(self.data.image_paths[image_id]),
                          [self.data.synsets.index(truth.label)], frame, self.plan.crops.top_k)
        if found is None:
            raise ValueError(f"{image_id}: its maps are not in the saliency cache ({self.plan.engine.cache_dir})")
        return found

    def maps(self, image_id: str, synset: str | None = None, frame: MapFrame = "original") -> np.ndarray:
        """The map of ``synset`` (a WNID; default: the image's ground-truth class) in ``frame``
        (``"original"`` pixels, ``"resized"``, or ``"wsol"``: 224 x 224 in [0, 1])."""
        result = self._saliency(image_id)
        wnid = synset or self.data.ground_truth[image_id].label
        classes = [self.data.synsets.wnid(int(c)) for c in result.classes]
        if wnid not in classes:
            raise KeyError(f"{image_id}: no map of {wnid} (the run computed {', '.join(classes)})")
        truth = self.data.ground_truth[image_id]
        original = truth.size or read_rgb(self.data.image_paths[image_id]).shape[:2]
        return _frame_map(result.maps[classes.index(wnid)], frame, original)

    def show(self, image_id: str, synset: str | None = None) -> Figure:
        """The image under its map of ``synset`` (default: the ground truth's), with the ground
        truth's boxes and the run's guesses, labelled."""
        rows = self.predictions[self.predictions.image_id == image_id].sort_values("rank")
        guesses = [Box(int(r.xmin), int(r.ymin), int(r.xmax), int(r.ymax), r.synset) for r in rows.itertuples()
                   if not pd.isna(r.xmin)]
        truth = self.data.ground_truth[image_id]
        labels = [f"truth: {_class_name(self.data.synsets, truth.label)}"] * len(truth.boxes)
        labels += [f"{r.rank}. {r.name}" for r in rows.itertuples() if not pd.isna(r.xmin)]
        return overlay(self.data.image_paths[image_id], self.maps(image_id, synset, "resized"),
                       [*truth.boxes, *guesses], labels, title=image_id)


def run(
    data: Any,
    ground_truth: Mapping[str, ImageAnnotation] | str | Path | None = None,
    model: Classifier | ModelSpec | str | torch.nn.Module = "efficientnet_lite0",
    method: object = "gradient",
    segmenter: BoxExtractor | str = "graphcut",
    metrics: Sequence[str | Evaluator] = DEFAULT_METRICS,
    tta: CropSettings = CropSettings(),
    engine: EngineSettings = EngineSettings(),
    out_dir: str | Path | None = None,
    limit: int | None = None,
    resume: bool = False,
    processes: int | str = "auto",
    figures: int = 0,
    save_maps: bool = False,
    progress: bool = True,
) -> RunResult:
    """A whole localisation run, as ``python -m wsol_bench`` does it (the same engine: sharded
    over ``processes`` ranks, resumable with ``resume=True`` into the same ``out_dir``, every
    metric, the same reports).

    ``data``: a folder of images with ``ground_truth`` (a ``LOC_val_solution.csv``, a folder of
    XML files, or a mapping such as :func:`load_ground_truth` returns); a download's root
    folder (Kaggle or devkit layout, as ``dataset.root``) without ``ground_truth``; a list
    of image paths with ``ground_truth``; a :class:`~wsol_bench.data.sources.DatasetSpec` or
    a mapping of ``dataset`` settings. ``limit``: the first N images. ``model``: a name, a
    :class:`ModelSpec`, a :class:`Classifier` or an ``nn.Module`` (ImageNet mean/std).
    ``method``: a name or anything :func:`~wsol_bench.saliency.as_method` takes.
    ``out_dir``: default ``outputs/run/<time>``. Returns a :class:`RunResult`.
    """
    spec, evaluation_set = _evaluation_set(data, ground_truth, limit)
    built = model if isinstance(model, (Classifier, torch.nn.Module)) else None
    spec_of_model = model if isinstance(model, ModelSpec) else ModelSpec(name=model) if isinstance(model, str) else None
    plan = LocalisationPlan(
        dataset=spec,
        model=spec_of_model or ModelSpec(),
        method=as_saliency_method(method),
        crops=tta,
        extractor=box_extractor(segmenter) if isinstance(segmenter, str) else segmenter,
        evaluators=tuple(evaluator(m) if isinstance(m, str) else m for m in metrics),
        engine=engine,
        run=RunSettings(resume=resume, figures=figures, save_maps=save_maps, processes=processes,  # type: ignore[arg-type]
                        progress=progress),
        classifier=as_classifier(built) if built is not None else None,
    )
    out = Path(out_dir) if out_dir is not None else Path("outputs/run") / f"{datetime.datetime.now():%Y-%m-%d_%H-%M-%S}"
    metrics_json = run_localisation(plan, evaluation_set, out)
    return RunResult(out, metrics_json, plan, evaluation_set)


__all__ = ["Localised", "RunResult", "as_classifier", "evaluate", "load_ground_truth", "localise", "overlay", "run",
           "score_maps"]
