"""Image decoding that copes with the oddities of real ILSVRC files, and the run's Dataset.

Decoding sniffs the format from the content (a PNG named ``.JPEG`` decodes), converts
CMYK, greyscale, palette and alpha images to RGB, scales 16-bit data to 8 bits, refuses
images above a pixel limit (decompression bombs), and reports unreadable or truncated files
as a failure with a reason instead of raising, so a long run goes on.
"""

from __future__ import annotations

import ctypes
import hashlib
import io
import os
import signal
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch.utils.data
from PIL import Image, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 178_956_970  # Pillow's own limit for an error (twice its warning limit)
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


class ImageReadError(Exception):
    """An image file that cannot be decoded; the message names the file and the cause."""


def read_rgb(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS, data: bytes | None = None) -> np.ndarray:
    """Decode ``path`` (or its already-read bytes ``data``) into ``H x W x 3`` uint8 RGB.

    Images of more than ``max_pixels`` pixels are refused (``None``: no limit). Raises
    :class:`ImageReadError` naming the file and the cause.
    """
    path = Path(path)
    try:
        source = path if data is None else io.BytesIO(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as im:
                if max_pixels is not None and im.width * im.height > max_pixels:
                    raise ImageReadError(
                        f"{path}: {im.width}x{im.height} = {im.width * im.height} pixels exceeds the limit of "
                        f"{max_pixels} (dataset.max_pixels)")
                im.load()  # decode now: truncated data fails here, not later
                rgb = _to_rgb(im)
    except ImageReadError:
        raise
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise ImageReadError(f"{path}: cannot decode image ({type(err).__name__}: {err})") from err
    if rgb.ndim != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ImageReadError(f"{path}: decoded to an empty image {rgb.shape}")
    return np.ascontiguousarray(rgb)


def _to_rgb(im: Image.Image) -> np.ndarray:
    if im.mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(im, dtype=np.float64)
        grey = np.clip(np.round(values * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, im)
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


@dataclass
class LoadedImage:
    """One decoded image: its size and resized copy, and the SHA-256 of the file's bytes."""

    index: int  # position in the evaluated set (sorted file-name order)
    image_id: str
    original_size: tuple[int, int]  # (height, width); (0, 0) when decoding failed
    resized: np.ndarray | None  # H x W x 3 uint8, shorter side = saliency.resize
    content_sha256: str = ""
    error: str | None = None
    decode_seconds: float = 0.0

    def pin_memory(self) -> LoadedImage:
        """The DataLoader's ``pin_memory=True`` hook (CUDA runs): ``resized`` becomes a NumPy
        view of page-locked memory, so its copy to the GPU can be asynchronous."""
        if self.resized is not None:
            self.resized = torch.from_numpy(self.resized).pin_memory().numpy()
        return self


class ImageDataset(torch.utils.data.Dataset):
    """Reads, hashes, decodes and resizes the images of an evaluation set (in DataLoader workers)."""

    def __init__(
        self,
        items: Sequence[tuple[int, str, Path]],
        resize: Callable[[np.ndarray], np.ndarray],
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.items = list(items)
        self.resize = resize
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> LoadedImage:
        index, image_id, path = self.items[i]
        start = time.perf_counter()
        try:
            data = Path(path).read_bytes()
        except OSError as err:
            return LoadedImage(index, image_id, (0, 0), None, "", f"{path}: cannot read ({err})",
                               time.perf_counter() - start)
        digest = hashlib.sha256(data).hexdigest()
        try:
            rgb = read_rgb(path, self.max_pixels, data)
            resized = self.resize(rgb)
        except ImageReadError as err:
            return LoadedImage(index, image_id, (0, 0), None, digest, str(err), time.perf_counter() - start)
        return LoadedImage(index, image_id, rgb.shape[:2], resized, digest, None, time.perf_counter() - start)


def collate_images(batch: list[LoadedImage]) -> list[LoadedImage]:
    """Keep a batch as a list: images differ in size."""
    return batch


def die_with_parent(*_: object) -> None:
    """Worker initialiser: ask Linux to kill this process when its parent dies
    (``prctl(PR_SET_PDEATHSIG, SIGKILL)``), so no worker outlives a killed run. A no-op
    elsewhere. Also limits the worker's own thread pools to one thread."""
    import multiprocessing

    spawner = multiprocessing.parent_process()
    parent = spawner.pid if spawner is not None else os.getppid()
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect (e.g. while this worker started)
        os._exit(1)
    import cv2
    from threadpoolctl import threadpool_limits

    cv2.setNumThreads(1)
    threadpool_limits(1)
    torch.set_num_threads(1)
