"""Frames and crops of the saliency computation (Section 3 of the paper).

Frames of one image:

* *original*: the decoded image, ``(height, width)``;
* *resized*: shorter side resized to ``saliency.resize`` (256) by
  :func:`resize_shorter_side`; saliency maps live in this frame;
* *crop*: a ``crop x crop`` window of the resized frame (:class:`CropWindow`), possibly
  horizontally reflected before it enters the network.

Pixel ``(y, x)`` is row ``y``, column ``x``, 0-based. Boxes move between frames with
:func:`wsol_bench.boxes.scale_box`; maps with :func:`map_to_original`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np


def _cv2_interpolation(src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> int:
    """Area averaging when shrinking (anti-aliased), bilinear when enlarging."""
    return cv2.INTER_AREA if dst_hw[0] * dst_hw[1] < src_hw[0] * src_hw[1] else cv2.INTER_LINEAR


def resized_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """``(height, width)`` with the shorter side ``size`` and the aspect ratio kept (rounded, >= 1)."""
    if height < 1 or width < 1 or size < 1:
        raise ValueError(f"cannot resize a {height}x{width} image to shorter side {size}")
    if height <= width:
        return size, max(1, round(width * size / height))
    return max(1, round(height * size / width)), size


def resize_shorter_side(image: np.ndarray, size: int) -> np.ndarray:
    """Resize an ``H x W x 3`` uint8 RGB image so that its shorter side is ``size``.

    The longer side is ``round(longer * size / shorter)``. Interpolation (OpenCV,
    pixel-centre aligned): ``INTER_AREA`` when the image shrinks, ``INTER_LINEAR``
    (bilinear) when it grows, so tiny images are enlarged smoothly. Works for any
    ``H, W >= 1``; an image already at the size is returned unchanged (not copied).
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {image.shape}")
    h, w = image.shape[:2]
    th, tw = resized_shape(h, w, size)
    if (th, tw) == (h, w):
        return image
    return cv2.resize(np.ascontiguousarray(image), (tw, th), interpolation=_cv2_interpolation((h, w), (th, tw)))


@dataclass(frozen=True)
class CropWindow:
    """A ``size x size`` window of the resized frame at rows ``y0..y0+size-1``, columns
    ``x0..x0+size-1``; ``flip``: the window is reflected left-right before the network."""

    y0: int
    x0: int
    size: int
    flip: bool


def crop_windows(height: int, width: int, crop: int, n_crops: int) -> list[CropWindow]:
    """The paper's crops of a ``height x width`` resized frame.

    ``n_crops=1``: the centre crop. ``n_crops=10``: top-left, top-right, bottom-left,
    bottom-right, centre, then the same five reflected. Centre offsets round down.
    Raises ``ValueError`` if the frame is smaller than the crop or ``n_crops`` is not 1 or 10.
    """
    if n_crops not in (1, 10):
        raise ValueError(f"saliency.crops must be 1 (centre) or 10 (corners, centre and reflections), not {n_crops}")
    if crop < 1:
        raise ValueError(f"crop size must be positive, not {crop}")
    if height < crop or width < crop:
        raise ValueError(
            f"the {height}x{width} frame is smaller than the {crop}x{crop} crop: resize its shorter side "
            f"to at least {crop} (saliency.resize >= saliency.crop)"
        )
    cy, cx = (height - crop) // 2, (width - crop) // 2
    if n_crops == 1:
        return [CropWindow(cy, cx, crop, False)]
    b, r = height - crop, width - crop
    corners = [(0, 0), (0, r), (b, 0), (b, r), (cy, cx)]
    return [CropWindow(y, x, crop, flip) for flip in (False, True) for (y, x) in corners]


def paste_maps(crop_maps: np.ndarray, windows: Sequence[CropWindow], frame: tuple[int, int]) -> np.ndarray:
    """Average per-crop maps into the resized frame.

    ``crop_maps``: ``(..., n, crop, crop)``, map ``i`` in the orientation the network saw
    (a reflected window's map is flipped back here). ``frame``: ``(height, width)``.
    Returns ``(..., height, width)`` float32: at each pixel the mean over the crops
    covering it; 0 where no crop covers it.
    """
    crop_maps = np.asarray(crop_maps)
    if crop_maps.shape[-3] != len(windows):
        raise ValueError(f"{crop_maps.shape[-3]} crop maps for {len(windows)} windows")
    h, w = frame
    lead = crop_maps.shape[:-3]
    total = np.zeros((*lead, h, w), dtype=np.float32)
    count = np.zeros((h, w), dtype=np.float32)
    for i, win in enumerate(windows):
        m = crop_maps[..., i, :, :]
        if win.flip:
            m = m[..., :, ::-1]
        total[..., win.y0 : win.y0 + win.size, win.x0 : win.x0 + win.size] += m
        count[win.y0 : win.y0 + win.size, win.x0 : win.x0 + win.size] += 1
    np.divide(total, count, out=total, where=count > 0)
    return total


def map_to_original(saliency: np.ndarray, original_size: tuple[int, int]) -> np.ndarray:
    """Resize an ``(H, W)`` map of the resized frame to ``original_size = (height, width)``.

    OpenCV, pixel-centre aligned: bilinear when enlarging, area averaging when shrinking.
    Float dtypes are kept (float16 and integers become float32).
    """
    saliency = np.asarray(saliency)
    if saliency.ndim != 2:
        raise ValueError(f"expected an (H, W) map, got shape {saliency.shape}")
    if saliency.dtype not in (np.float32, np.float64):
        saliency = saliency.astype(np.float32)
    h, w = saliency.shape
    th, tw = int(original_size[0]), int(original_size[1])
    if (th, tw) == (h, w):
        return saliency.copy()
    return cv2.resize(np.ascontiguousarray(saliency), (tw, th), interpolation=_cv2_interpolation((h, w), (th, tw)))
