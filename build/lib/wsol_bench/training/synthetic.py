"""A tiny generated ImageNet-style data set for smoke runs and tests.

Class ``k`` is one coloured shape (circle, square, triangle, cross, diamond, ring; each
with its own colour) at a random position and scale on a noisy grey background.
Folders are named with made-up WNIDs ``n9000000k`` so the layout matches ILSVRC
(``<root>/train/<wnid>/*.JPEG`` and ``<root>/val/<wnid>/*.JPEG``). Deterministic in ``seed``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "cross", "diamond", "ring")
COLOURS = ((220, 40, 40), (40, 180, 60), (50, 80, 230), (235, 210, 40), (200, 60, 200), (40, 200, 210))
MAX_CLASSES = len(SHAPES)


def synthetic_wnid(k: int) -> str:
    """Made-up WNID of synthetic class ``k`` (sorted order = class order)."""
    return f"n{90000000 + k:08d}"


def draw_shape(k: int, size: int, rng: np.random.Generator) -> Image.Image:
    """One ``size`` x ``size`` RGB image of class ``k``."""
    base = rng.integers(90, 166)
    noise = rng.normal(0.0, 18.0, size=(size, size, 3))
    image = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    r = rng.uniform(0.2, 0.35) * size
    cx, cy = rng.uniform(r, size - r, size=2)
    colour = tuple(int(np.clip(c + rng.integers(-20, 21), 0, 255)) for c in COLOURS[k])
    box = (cx - r, cy - r, cx + r, cy + r)
    shape = SHAPES[k]
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
    elif shape == "cross":
        w = r / 3
        draw.rectangle((cx - r, cy - w, cx + r, cy + w), fill=colour)
        draw.rectangle((cx - w, cy - r, cx + w, cy + r), fill=colour)
    elif shape == "diamond":
        draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=colour)
    else:  # ring
        draw.ellipse(box, outline=colour, width=max(2, int(r / 3)))
    return image


def make_synthetic_dataset(
    root: str | Path,
    num_classes: int = 4,
    train_per_class: int = 32,
    val_per_class: int = 8,
    size: int = 64,
    seed: int = 0,
) -> tuple[Path, Path]:
    """Write ``root/train/<wnid>/*.JPEG`` and ``root/val/<wnid>/*.JPEG``; return both folders.

    Reuses the folders when they already hold the expected number of files, so a resumed
    run trains on identical data.
    """
    if not 1 <= num_classes <= MAX_CLASSES:
        raise ValueError(f"num_classes must be in 1..{MAX_CLASSES}, got {num_classes}")
    root = Path(root)
    rng = np.random.default_rng(seed)
    out = []
    for split, per_class in (("train", train_per_class), ("val", val_per_class)):
        split_dir = root / split
        expected = num_classes * per_class
        if split_dir.is_dir() and len(list(split_dir.glob("*/*.JPEG"))) == expected:
            out.append(split_dir)
            continue
        for k in range(num_classes):
            folder = split_dir / synthetic_wnid(k)
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                draw_shape(k, size, rng).save(folder / f"{split}_{k}_{i:04d}.JPEG", quality=95)
        out.append(split_dir)
    return out[0], out[1]
