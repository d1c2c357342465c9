"""Frames of one image and the one resize rule used between them.

* *original*: the decoded image, ``(height, width)``;
* *resized*: shorter side resized to ``resize`` (256) by :func:`resize_shorter_side`;
  saliency maps live in this frame;
* *crop*: a square window of the resized frame (:mod:`wsol_bench.saliency.crops`);
* *working*: the frame a box extractor segments in (:mod:`wsol_bench.segmentation`);
* *wsolevaluation's*: ``224 x 224``, the whole image stretched to the square (aspect ratio
  not kept), where clovaai/wsolevaluation compares score maps and boxes (:func:`wsol_scoremap`).

Every resize of an image or a map goes through :func:`resize_to`: OpenCV, pixel-centre
aligned, area averaging when the result has fewer pixels (anti-aliased), bilinear
otherwise. Boxes move between frames with :meth:`wsol_bench.boxes.Box.scaled`.
"""

from __future__ import annotations

import cv2
import numpy as np

from wsol_bench.boxes import Size

#: wsolevaluation's ``_RESIZE_LENGTH``: score maps and boxes are compared in 224 x 224.
RESIZE_LENGTH = 224


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


def normalize_scoremap(cam: np.ndarray) -> np.ndarray:
    """Min-max normalised float64 copy in [0, 1]; all zeros when ``cam`` has a NaN (or an
    infinity) or is constant (wsolevaluation's ``normalize_scoremap``)."""
    cam = np.array(cam, dtype=np.float64)
    if not np.isfinite(cam).all() or cam.min() == cam.max():
        return np.zeros_like(cam)
    cam -= cam.min()
    cam /= cam.max()
    return cam


def wsol_scoremap(saliency: np.ndarray, length: int = RESIZE_LENGTH) -> np.ndarray:
    """A map of any frame as wsolevaluation scores it: float64, resized to ``length x length``
    by ``cv2.INTER_CUBIC`` (aspect ratio not kept), then :func:`normalize_scoremap`."""
    cam = np.asarray(saliency, dtype=np.float64)
    if cam.ndim != 2:
        raise ValueError(f"expected an (H, W) map, got shape {cam.shape}")
    if cam.shape != (length, length):
        cam = np.asarray(cv2.resize(np.ascontiguousarray(cam), (length, length), interpolation=cv2.INTER_CUBIC),
                         dtype=np.float64)
    return normalize_scoremap(cam)


def check_scoremap(scoremap: np.ndarray, where: str, length: int = RESIZE_LENGTH) -> np.ndarray:
    """``scoremap`` as float64 after wsolevaluation's ``check_scoremap_validity`` (2-D, no NaN,
    values in [0, 1]) and a check that it is ``length x length`` (the frame of the boxes)."""
    arr = np.asarray(scoremap)
    if arr.dtype.kind != "f":
        raise TypeError(f"{where}: a score map must be a float array, not {arr.dtype}")
    if arr.ndim != 2 or arr.shape != (length, length):
        raise ValueError(f"{where}: a score map must be {length} x {length}, not {arr.shape}")
    arr = arr.astype(np.float64)
    if np.isnan(arr).any():
        raise ValueError(f"{where}: the score map contains NaN")
    if (arr > 1).any() or (arr < 0).any():
        raise ValueError(f"{where}: score map values must be in [0, 1] (min {arr.min()}, max {arr.max()})")
    return arr
