"""Frames of one image and the one resize rule used between them.

* *original*: the decoded image, ``(height, width)``;
* *resized*: shorter side resized to ``resize`` (256) by :func:`resize_shorter_side`;
  saliency maps live in this frame;
* *crop*: a square window of the resized frame (:mod:`wsol_bench.saliency.crops`);
* *working*: the frame a box extractor segments in (:mod:`wsol_bench.segmentation`).

Every resize of an image or a map goes through :func:`resize_to`: OpenCV, pixel-centre
aligned, area averaging when the result has fewer pixels (anti-aliased), bilinear
otherwise. Boxes move between frames with :meth:`wsol_bench.boxes.Box.scaled`.
"""

from __future__ import annotations

import cv2
import numpy as np

from wsol_bench.boxes import Size


def resize_to(array: np.ndarray, size: Size) -> np.ndarray:
    """``array`` (``H x W`` or ``H x W x C``) resized to ``size = (height, width)``.

    An array already at the size is returned unchanged (not copied). Float arrays other
    than float32/float64 become float32.
    """
    h, w = array.shape[:2]
    th, tw = int(size[0]), int(size[1])
    if (th, tw) == (h, w):
        return array
    if array.dtype.kind == "f" and array.dtype not in (np.float32, np.float64):
        array = array.astype(np.float32)
    interpolation = cv2.INTER_AREA if th * tw < h * w else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(array), (tw, th), interpolation=interpolation)


def resized_shape(height: int, width: int, size: int) -> Size:
    """``(height, width)`` with the shorter side ``size`` and the aspect ratio kept (rounded, >= 1)."""
    if height < 1 or width < 1 or size < 1:
        raise ValueError(f"cannot resize a {height}x{width} image to shorter side {size}")
    if height <= width:
        return size, max(1, round(width * size / height))
    return max(1, round(height * size / width)), size


def resize_shorter_side(image: np.ndarray, size: int) -> np.ndarray:
    """An ``H x W x 3`` uint8 RGB image resized so that its shorter side is ``size``.

    The longer side is ``round(longer * size / shorter)``; :func:`resize_to`'s rule, so tiny
    images are enlarged smoothly. Works for any ``H, W >= 1``.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {image.shape}")
    return resize_to(image, resized_shape(image.shape[0], image.shape[1], size))


def map_to_original(saliency: np.ndarray, original_size: Size) -> np.ndarray:
    """An ``(H, W)`` map of the resized frame in ``original_size = (height, width)`` (a copy).

    Float dtypes are kept (float16 and integers become float32).
    """
    saliency = np.asarray(saliency)
    if saliency.ndim != 2:
        raise ValueError(f"expected an (H, W) map, got shape {saliency.shape}")
    if saliency.dtype not in (np.float32, np.float64):
        saliency = saliency.astype(np.float32)
    out = resize_to(saliency, original_size)
    return out.copy() if out is saliency else out


def resize_mask(mask: np.ndarray, size: Size) -> np.ndarray:
    """A bool mask resized to ``size = (height, width)`` by nearest neighbour."""
    if mask.shape[:2] == tuple(size):
        return mask
    return cv2.resize(mask.astype(np.uint8), (int(size[1]), int(size[0])), interpolation=cv2.INTER_NEAREST).astype(bool)
