"""Saving class model images: one PNG per class and a titled matplotlib grid."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from wsol_bench.figures import new_figure, save_figure


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """``(3, H, W)`` float RGB in [0, 1] to an ``(H, W, 3)`` uint8 array."""
    return (image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)


def save_images(images: torch.Tensor, paths: Sequence[str | Path]) -> list[Path]:
    """Write ``images[k]`` (``(K, 3, H, W)`` RGB in [0, 1]) as a PNG at ``paths[k]``."""
    if len(images) != len(paths):
        raise ValueError(f"{len(images)} images but {len(paths)} paths")
    out = []
    for image, path in zip(images, paths):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(to_uint8(image)).save(path)
        out.append(path)
    return out


def save_grid(
    images: torch.Tensor,
    titles: Sequence[str],
    path: str | Path,
    columns: int = 4,
    suptitle: str | None = None,
    tile_inches: float = 2.2,
    dpi: int = 120,
) -> Path:
    """A grid of ``images`` (``(K, 3, H, W)`` RGB in [0, 1]), each titled, ``columns`` wide."""
    k = len(images)
    if len(titles) != k:
        raise ValueError(f"{k} images but {len(titles)} titles")
    columns = max(1, min(columns, k))
    rows = -(-k // columns)
    fig = new_figure(tile_inches * columns, (tile_inches + 0.55) * rows + (0.5 if suptitle else 0), dpi)
    axes = fig.subplots(rows, columns, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < k:
            ax.imshow(to_uint8(images[i]), interpolation="nearest")
            ax.set_title(titles[i], fontsize=10)
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)
