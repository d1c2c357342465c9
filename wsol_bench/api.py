"""The Python API: localise with any model and method in a few lines, and score predictions.

    import wsol_bench
    result = wsol_bench.localise("efficientnet_lite0", "cat.jpg", method="gradient", segmenter="graphcut")
    result.classes, result.scores, result.boxes    # best first; boxes in original-image pixels

Everything the CLI does for one image, without Hydra: resize to ``crops.resize``, the
method under the test-time crops, top-k selection, one box per class from the box
extractor, boxes and maps mapped back to the original image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from wsol_bench.boxes import Box, ImageAnnotation
from wsol_bench.data.images import to_rgb
from wsol_bench.data.synsets import SynsetTable, default_synsets
from wsol_bench.frames import map_to_original, resize_shorter_side
from wsol_bench.models import Classifier, ModelSpec, build_classifier, wrap_module
from wsol_bench.saliency import (
    CropSettings,
    SaliencyMethod,
    image_saliency,
    saliency_method,
)
from wsol_bench.segmentation import (
    BoxExtractor,
    Localisation,
    box_extractor,
    localise_image,
)


@dataclass
class Localised:
    """One image's result. ``classes``: WNIDs (class indices as strings for a model whose
    outputs are not the 1000 ILSVRC classes), best first; ``scores``: mean logits over the
    crops; ``boxes``: one per class, in original-image pixels (0-based inclusive), labelled
    with the class; ``maps``: ``(K, H, W)`` float32 saliency maps in original-image pixels;
    ``localisations``: the extractor's results in the resized frame (masks, seeds, fallbacks)."""

    classes: list[str]
    class_indices: list[int]
    scores: list[float]
    boxes: list[Box]
    maps: np.ndarray
    localisations: list[Localisation]


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


def localise(
    model: Classifier | ModelSpec | str | torch.nn.Module,
    image: Any,
    method: SaliencyMethod | str = "gradient",
    segmenter: BoxExtractor | str = "graphcut",
    top_k: int = 5,
    crops: int | CropSettings = 10,
    classes: Sequence[int] = (),
    synsets: SynsetTable | None = None,
) -> Localised:
    """Saliency maps and boxes of ``image``'s top-``top_k`` classes (then ``classes``).

    ``method`` / ``segmenter``: a name (with the defaults of ``conf/saliency/<name>.yaml`` and
    ``conf/segmentation/<name>.yaml`` being the classes' own defaults) or a configured
    object, e.g. ``wsol_bench.saliency_method("smoothgrad", n_samples=10)``. ``crops``: 10, 2 or
    1 crops of a 224 window of the image resized to shorter side 256, or full
    :class:`CropSettings`. ``synsets``: names the 1000 ILSVRC classes (default: sorted WNIDs).
    """
    classifier = as_classifier(model)
    method = saliency_method(method) if isinstance(method, str) else method
    segmenter = box_extractor(segmenter) if isinstance(segmenter, str) else segmenter
    settings = crops if isinstance(crops, CropSettings) else CropSettings(crops=int(crops), top_k=top_k)
    rgb = to_rgb(image)
    resized = resize_shorter_side(rgb, settings.resize)
    [result] = image_saliency(method, classifier, [resized], settings, extra_classes=[list(classes)])
    original = rgb.shape[:2]
    table = synsets or default_synsets()
    indices = [int(c) for c in result.classes]
    names = [table.wnid(c) if len(result.logits) == len(table) else str(c) for c in indices]
    located = localise_image(segmenter, resized, result.maps, original)
    boxes = [box.labelled(name) for box, name in zip(located.boxes, names)]
    maps = np.stack([map_to_original(m, original) for m in result.maps])
    return Localised(names, indices, [float(result.logits[c]) for c in indices], boxes, maps, located.localisations)


def evaluate(
    predictions: pd.DataFrame | str | Path,
    ground_truth: Mapping[str, ImageAnnotation] | str | Path,
    iou_threshold: float = 0.5,
    max_guesses: int = 5,
) -> dict[str, Any]:
    """The devkit's figures for a prediction table (or a long-format CSV file, see
    :mod:`wsol_bench.data.predictions`) against ground truth (a mapping, a folder of XML
    files or a ``LOC_val_solution.csv``). Every ground-truth image counts: one without a
    guess is an error (``n_missing`` says how many). Returns the ``metrics.json`` keys."""
    from wsol_bench.data.ground_truth import read_annotation_dir, read_solution_csv
    from wsol_bench.data.predictions import read_predictions_csv
    from wsol_bench.metrics.ilsvrc import evaluate_predictions

    if isinstance(predictions, (str, Path)):
        predictions = read_predictions_csv(predictions)
    if isinstance(ground_truth, (str, Path)):
        path = Path(ground_truth)
        ground_truth = read_annotation_dir(path) if path.is_dir() else read_solution_csv(path)
    predictions = predictions[predictions["image_id"].isin(ground_truth)]
    summary, _ = evaluate_predictions(predictions, ground_truth, max_guesses, iou_threshold)
    return summary
