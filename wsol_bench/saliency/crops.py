"""The crops of the saliency computation (Section 3 of the paper) and pasting their maps back.

A crop is a square window of the *resized* frame (:mod:`wsol_bench.frames`), possibly
reflected left-right before it enters the network. Pixel ``(y, x)`` is row ``y``, column
``x``, 0-based.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from wsol_bench.boxes import Box, Size

CROP_COUNTS = (1, 2, 10)


@dataclass(frozen=True)
class CropWindow:
    """A square window of the resized frame (``box``, inclusive pixels); ``flip``: reflected
    left-right before the network."""

    box: Box
    flip: bool

    @property
    def size(self) -> int:
        return self.box.width


def crop_windows(height: int, width: int, crop: int, n_crops: int) -> list[CropWindow]:
    """The paper's crops of a ``height x width`` resized frame.

    ``n_crops=1``: the centre crop; ``2``: the centre crop and its reflection; ``10``:
    top-left, top-right, bottom-left, bottom-right, centre, then the same five reflected.
    Centre offsets round down. Raises ``ValueError`` if the frame is smaller than the crop.
    """
    if n_crops not in CROP_COUNTS:
        raise ValueError(f"tta.crops must be 1 (centre), 2 (centre and its reflection) or 10 "
                         f"(corners, centre and reflections), not {n_crops}")
    if crop < 1:
        raise ValueError(f"crop size must be positive, not {crop}")
    if height < crop or width < crop:
        raise ValueError(
            f"the {height}x{width} frame is smaller than the {crop}x{crop} crop: resize its shorter side "
            f"to at least {crop} (tta.resize >= tta.crop)"
        )
    cy, cx = (height - crop) // 2, (width - crop) // 2
    b, r = height - crop, width - crop
    corners = [(cy, cx)] if n_crops < 10 else [(0, 0), (0, r), (b, 0), (b, r), (cy, cx)]
    flips = (False,) if n_crops == 1 else (False, True)
    return [CropWindow(Box(x, y, x + crop - 1, y + crop - 1), flip) for flip in flips for (y, x) in corners]


def crop_tensors(image: torch.Tensor, windows: Sequence[CropWindow]) -> list[torch.Tensor]:
    """The ``(3, s, s)`` crops of a ``(3, H, W)`` image, reflected where the window says."""
    out = []
    for w in windows:
        c = image[:, w.box.ymin : w.box.ymax + 1, w.box.xmin : w.box.xmax + 1]
        out.append(torch.flip(c, dims=(2,)) if w.flip else c)
    return out


def paste_maps(crop_maps: np.ndarray, windows: Sequence[CropWindow], frame: Size) -> np.ndarray:
    """Average per-crop maps into the resized frame.

    ``crop_maps``: ``(..., n, s, s)``, map ``i`` in the orientation the network saw (a
    reflected window's map is flipped back here). ``frame``: ``(height, width)``. Returns
    ``(..., height, width)`` float32: at each pixel the mean over the crops covering it; 0
    where no crop covers it.
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
        rows, cols = slice(win.box.ymin, win.box.ymax + 1), slice(win.box.xmin, win.box.xmax + 1)
        total[..., rows, cols] += m
        count[rows, cols] += 1
    np.divide(total, count, out=total, where=count > 0)
    return total
