"""Image-level saliency: any method under the paper's test-time augmentation.

For images already resized to shorter side ``resize`` (256):

1. crops: the 4 corner and the centre ``crop x crop`` windows and their reflections (10),
   the centre window and its reflection (2), or the centre window alone (1);
2. the image's class scores are the **logits** (never softmax) averaged over its crops;
   its classes are the ``top_k`` by mean logit, best first (ties: lower index), then any
   requested extra classes (e.g. the ground truth) not already among them;
3. the method gives one map per crop and class (:mod:`wsol_bench.saliency.base`): one
   forward pass over all crops, then the maps of the chosen classes; what it returns is
   checked (logits ``(N, C)`` and finite, maps ``(K, N, h, w)`` and non-negative), and a
   violation is an error naming the model or the method;
4. a reflected crop's map is flipped back; the crop maps are pasted into the resized frame
   and averaged where they overlap (pixels no crop covers are 0).

All crops of all images of a call go through the method together. Class indices are model
output indices (sorted-WNID order for ImageNet classifiers).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from wsol_bench.models import Classifier
from wsol_bench.registry import require
from wsol_bench.saliency.base import SaliencyMethod, checked_maps
from wsol_bench.saliency.crops import (
    CROP_COUNTS,
    crop_tensors,
    crop_windows,
    paste_maps,
)


@dataclass(frozen=True)
class CropSettings:
    """The test-time augmentation: resize, crop size, number of crops, classes per image."""

    resize: int = 256  # shorter side of the resized frame
    crop: int = 224  # square crop side
    crops: int = 10  # 10 (4 corners + centre, and reflections), 2 (centre + reflection) or 1 (centre)
    top_k: int = 5  # classes per image, by mean logit over the crops

    def __post_init__(self) -> None:
        require(self.crop >= 8, "crop", self.crop, ">= 8")
        require(self.resize >= self.crop, "resize", self.resize, f">= crop ({self.crop})")
        require(self.crops in CROP_COUNTS, "crops", self.crops, "1, 2 or 10")
        require(1 <= self.top_k <= 1000, "top_k", self.top_k, "between 1 and 1000")


@dataclass
class SaliencyResult:
    """Saliency of one image.

    ``logits``: ``(num_classes,)`` float32 mean logits over the crops. ``classes``: ``(K,)``
    int64, the ``top_k`` by mean logit, best first, then the extra requested classes not
    among them. ``maps``: ``(K, H, W)`` float32, ``maps[k]`` the saliency of ``classes[k]``
    in the resized frame (the frame of the input image).
    """

    logits: np.ndarray
    classes: np.ndarray
    maps: np.ndarray


def select_classes(mean_logits: np.ndarray, top_k: int, extra: Sequence[int] | None) -> np.ndarray:
    """Top ``top_k`` class indices by mean logit (best first, ties by lower index), then the
    ``extra`` ones not already listed, in the given order, without repeats."""
    num_classes = mean_logits.shape[0]
    if not 0 <= top_k <= num_classes:
        raise ValueError(f"top_k={top_k} must be between 0 and the number of classes ({num_classes})")
    order = np.argsort(-mean_logits.astype(np.float64), kind="stable")[:top_k]
    classes = [int(c) for c in order]
    for c in extra or ():
        c = int(c)
        if not 0 <= c < num_classes:
            raise ValueError(f"extra class {c} is not a class index of a {num_classes}-class model")
        if c not in classes:
            classes.append(c)
    return np.asarray(classes, dtype=np.int64)


def image_tensor(image: np.ndarray, device: torch.device) -> torch.Tensor:
    """``H x W x 3`` uint8 RGB -> ``(3, H, W)`` float32 in ``[0, 1]`` on ``device``."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    array = np.ascontiguousarray(image)
    if not array.flags.writeable:  # a read-only decoded image: torch wants a writable buffer
        array = array.copy()
    t = torch.from_numpy(array).to(device, non_blocking=True)
    return t.permute(2, 0, 1).float().div_(255.0)


def image_saliency(
    method: SaliencyMethod,
    classifier: Classifier,
    images: Sequence[np.ndarray],
    settings: CropSettings = CropSettings(),
    extra_classes: Sequence[Sequence[int]] | None = None,
    num_classes: int | None = None,
) -> list[SaliencyResult]:
    """Maps of each image's top-``top_k`` classes (and ``extra_classes[i]``) by ``method``.

    ``images``: already-resized ``H x W x 3`` uint8 RGB arrays (shorter side
    ``settings.resize``; sizes may differ). Maps are in each image's own (resized) frame.
    ``num_classes``: the number of classes the model must score (e.g. the data set's); a
    model with another output width is an error naming it. See the module docstring for the
    protocol.
    """
    if extra_classes is not None and len(extra_classes) != len(images):
        raise ValueError(f"extra_classes has {len(extra_classes)} entries for {len(images)} images")
    if classifier.module.training:
        warnings.warn(f"{classifier.name}: the module is in training mode (dropout, batch statistics); "
                      "saliency expects module.eval()", stacklevel=2)
    if not images:
        return []
    device = classifier.device
    windows = [crop_windows(im.shape[0], im.shape[1], settings.crop, settings.crops) for im in images]
    n_img, n_crops = len(images), len(windows[0])
    crops = torch.stack([c for im, win in zip(images, windows) for c in crop_tensors(image_tensor(im, device), win)])
    with torch.enable_grad():  # a caller's no_grad must not reach the methods that need gradients
        step = method.forward(classifier, crops)
    logits = checked_logits(classifier, step.logits, n_img * n_crops, num_classes)
    mean_logits = logits.reshape(n_img, n_crops, logits.shape[1]).mean(dim=1).cpu().numpy()
    classes = [select_classes(mean_logits[i], settings.top_k, None if extra_classes is None else extra_classes[i])
               for i in range(n_img)]
    targets = torch.full((max(len(c) for c in classes), n_img * n_crops), -1, dtype=torch.long)
    for i, cls in enumerate(classes):
        targets[: len(cls), i * n_crops : (i + 1) * n_crops] = torch.from_numpy(cls)[:, None]
    with torch.enable_grad():
        maps = step.maps(targets.to(device))
    maps_np = checked_maps(method, maps, (targets.shape[0], *crops.shape[:1], *crops.shape[2:])).numpy()
    out = []
    for i in range(n_img):
        rows = slice(i * n_crops, (i + 1) * n_crops)
        frame = (int(images[i].shape[0]), int(images[i].shape[1]))
        pasted = paste_maps(maps_np[: len(classes[i]), rows], windows[i], frame)
        out.append(SaliencyResult(mean_logits[i].astype(np.float32), classes[i], pasted))
    return out


class ModelOutputError(ValueError):
    """The classifier's output is not ``(N, num_classes)`` finite logits."""


def checked_logits(classifier: Classifier, logits: object, n: int, num_classes: int | None = None) -> torch.Tensor:
    """``logits`` as float32 if they are ``(n, num_classes)`` (any width when ``None``) and
    finite; else :class:`ModelOutputError` naming the model."""
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[0] != n:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ModelOutputError(f"{classifier.name}: expected ({n}, num_classes) logits for {n} crops, got {shape}")
    if num_classes is not None and logits.shape[1] != num_classes:
        raise ModelOutputError(
            f"{classifier.name} outputs {logits.shape[1]} class scores but {num_classes} classes are evaluated: "
            "the model must score the data set's classes, in sorted-WNID order for ImageNet (model.num_classes)")
    logits = logits.detach().float()
    if not bool(torch.isfinite(logits).all()):
        bad = int((~torch.isfinite(logits)).any(dim=1).sum())
        raise ModelOutputError(f"{classifier.name}: the model returned NaN or infinite logits for {bad} of {n} "
                               "crops (broken weights, or inputs outside what it was trained on)")
    return logits
