"""Image decoding that copes with the oddities of real ILSVRC files, and the run's Dataset.

Decoding sniffs the format from the content (a PNG named ``.JPEG`` decodes), converts
CMYK, greyscale, palette and alpha images to RGB, and reports unreadable or truncated
files as a failure with a reason instead of raising, so a long run goes on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch.utils.data
from PIL import Image, UnidentifiedImageError


class ImageReadError(Exception):
    """An image file that cannot be decoded; the message names the file and the cause."""


def read_rgb(path: str | Path) -> np.ndarray:
    """Decode ``path`` into an ``H x W x 3`` uint8 RGB array (raises :class:`ImageReadError`)."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()  # decode now: truncated data fails here, not later
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                im = im.convert("RGBA")
                background = Image.new("RGBA", im.size, (255, 255, 255, 255))
                im = Image.alpha_composite(background, im)
            rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise ImageReadError(f"{path}: cannot decode image ({type(err).__name__}: {err})") from err
    if rgb.ndim != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ImageReadError(f"{path}: decoded to an empty image {rgb.shape}")
    return np.ascontiguousarray(rgb)


@dataclass
class LoadedImage:
    """One decoded image: the original (for segmentation/figures) and its resized copy."""

    index: int  # position in the evaluated set (sorted file-name order)
    image_id: str
    original_size: tuple[int, int]  # (height, width); (0, 0) when decoding failed
    resized: np.ndarray | None  # H x W x 3 uint8, shorter side = saliency.resize
    error: str | None = None
    decode_seconds: float = 0.0


class ImageDataset(torch.utils.data.Dataset):
    """Decodes and resizes the images of an evaluation set (run in DataLoader workers)."""

    def __init__(
        self,
        items: Sequence[tuple[int, str, Path]],
        resize: Callable[[np.ndarray], np.ndarray],
    ) -> None:
        self.items = list(items)
        self.resize = resize

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> LoadedImage:
        index, image_id, path = self.items[i]
        start = time.perf_counter()
        try:
            rgb = read_rgb(path)
            resized = self.resize(rgb)
        except ImageReadError as err:
            return LoadedImage(index, image_id, (0, 0), None, str(err), time.perf_counter() - start)
        return LoadedImage(index, image_id, rgb.shape[:2], resized, None, time.perf_counter() - start)


def collate_images(batch: list[LoadedImage]) -> list[LoadedImage]:
    """Keep a batch as a list: images differ in size."""
    return batch
