"""A reference implementation of image saliency, written for clarity (tests and benchmarks only).

Per image: one forward pass per crop for the scores, then for every class and every crop its
own forward and backward pass (batch of one), through the method's protocol.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from wsol_bench.models import Classifier
from wsol_bench.saliency import (
    CropSettings,
    SaliencyMethod,
    SaliencyResult,
    attribution_maps,
    crop_windows,
    select_classes,
)
from wsol_bench.saliency.crops import crop_tensors
from wsol_bench.saliency.image_saliency import image_tensor


def naive_image_saliency(
    method: SaliencyMethod,
    classifier: Classifier,
    images: Sequence[np.ndarray],
    settings: CropSettings,
    extra_classes: Sequence[Sequence[int]] | None = None,
) -> list[SaliencyResult]:
    results = []
    for i, image in enumerate(images):
        h, w = image.shape[:2]
        windows = crop_windows(h, w, settings.crop, settings.crops)
        crops = crop_tensors(image_tensor(image, classifier.device), windows)
        with torch.no_grad():
            scores = [classifier.logits(c[None])[0].float().cpu().numpy() for c in crops]
        mean_logits = np.mean(scores, axis=0).astype(np.float32)
        classes = select_classes(mean_logits, settings.top_k, None if extra_classes is None else extra_classes[i])
        maps = np.zeros((len(classes), h, w), dtype=np.float32)
        count = np.zeros((h, w), dtype=np.float32)
        for win, c in zip(windows, crops):
            rows, cols = slice(win.box.ymin, win.box.ymax + 1), slice(win.box.xmin, win.box.xmax + 1)
            count[rows, cols] += 1
            for k, cls in enumerate(classes):
                m = attribution_maps(method, classifier, c[None].clone(), torch.tensor([int(cls)]))[0].cpu().numpy()
                maps[k, rows, cols] += m[:, ::-1] if win.flip else m
        maps = np.where(count > 0, maps / np.maximum(count, 1), 0).astype(np.float32)
        results.append(SaliencyResult(logits=mean_logits, classes=classes, maps=maps))
    return results
