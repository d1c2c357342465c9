"""Image decoding that copes with the oddities of real ILSVRC files, and the run's Dataset.

Decoding sniffs the format from the content (a PNG named ``.JPEG`` decodes), converts
CMYK, greyscale, palette, alpha and high-bit-depth images to 8-bit RGB by the rules of
:func:`to_rgb`, refuses images above a pixel limit (decompression bombs), and reports
unreadable or truncated files as a failure with a reason instead of raising, so a long run
goes on. The same rules convert PIL images, arrays and tensors given to the Python API.
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
from typing import Any

import numpy as np
import torch.utils.data
from PIL import Image, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 178_956_970  # Pillow's own limit for an error (twice its warning limit)

# Suffixes (lower case) of the files an image folder is read for: formats Pillow decodes
# without plugins. A multi-frame file (GIF, TIFF) gives its first frame.
IMAGE_SUFFIXES = frozenset({".jpeg", ".jpg", ".jpe", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp",
                            ".ppm", ".pgm", ".pbm", ".pnm"})
# Files an image folder is known to hold besides images (annotations, lists, archives): skipped.
NON_IMAGE_SUFFIXES = frozenset({".xml", ".txt", ".csv", ".tsv", ".json", ".yaml", ".yml", ".md", ".mat", ".npy",
                                ".npz", ".log", ".tar", ".tgz", ".gz", ".zip", ".pdf", ".html"})


class ImageReadError(Exception):
    """An image file that cannot be decoded; the message names the file and the cause."""


def sort_folder(directory: Path) -> tuple[list[Path], list[tuple[str, str]]]:
    """The image files of ``directory`` (sorted by name) and every other entry as ``(name, reason)``.

    An image file has a suffix of :data:`IMAGE_SUFFIXES` (any case) and is not hidden. The
    rest is skipped with its reason, the unexpected first: an unknown suffix, no suffix, then
    folders, hidden entries and known non-image files (:data:`NON_IMAGE_SUFFIXES`).
    """
    images: list[Path] = []
    skipped: list[tuple[int, str, str]] = []
    for p in sorted(directory.iterdir()):
        suffix = p.suffix.lower()
        if p.name.startswith("."):
            skipped.append((3, p.name, "hidden"))
        elif p.is_dir():
            skipped.append((2, p.name, "a folder"))
        elif not p.is_file():
            skipped.append((1, p.name, "not a regular file"))
        elif suffix in IMAGE_SUFFIXES:
            images.append(p)
        elif suffix in NON_IMAGE_SUFFIXES:
            skipped.append((4, p.name, f"not an image: {suffix}"))
        elif not suffix:
            skipped.append((1, p.name, "no suffix"))
        else:
            skipped.append((0, p.name, f"not a suffix Pillow reads here: {p.suffix}"))
    return images, [(name, reason) for _, name, reason in sorted(skipped)]


def read_rgb(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS, data: bytes | None = None) -> np.ndarray:
    """Decode ``path`` (or its already-read bytes ``data``) into ``H x W x 3`` uint8 RGB by the rules of :func:`to_rgb`.

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
                try:
                    rgb = to_rgb(im)
                except ValueError as err:  # decoded, but values no rule converts (NaN in a float image)
                    raise ImageReadError(f"{path}: {err}") from err
    except ImageReadError:
        raise
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise ImageReadError(f"{path}: cannot decode image ({type(err).__name__}: {err})") from err
    if rgb.ndim != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ImageReadError(f"{path}: decoded to an empty image {rgb.shape}")
    return np.ascontiguousarray(rgb)


def to_rgb(image: Any) -> np.ndarray:
    """``H x W x 3`` uint8 RGB from a path, a PIL image, a numpy array or a torch tensor.

    * a path (``str`` or ``Path``): :func:`read_rgb` (the PIL rules below, after decoding);
    * a PIL image, by mode: 8-bit modes (``1``, ``L``, ``P``, ``RGB``, ``CMYK``, ``YCbCr``,
      ...) through Pillow's own conversion; 16-bit ``I;16*`` from their full range (value
      / 257, rounded); 32-bit integer ``I`` (how Pillow opens many 16-bit files) as 16-bit
      data when all values are in 0..65535, else stretched from its min..max to 0..255;
      float ``F`` x 255 when all values are in [0, 1], else stretched from min..max; NaN or
      infinite values are refused;
    * an array (``H x W``, ``H x W x 1``, ``H x W x 3``, ``H x W x 4``; channels last) or a
      tensor (``(H, W)``, ``(1, H, W)``, ``(3, H, W)``, ``(4, H, W)``; channels first), by
      type: uint8 as is; float in [0, 1] x 255, rounded (anything else is refused: a
      normalised tensor, [0, 255] floats, NaN, infinity); uint16 / 257, rounded; other
      integer types (int64 from ``tensor.long()``, int32, ...) cast when all values are in
      0..255, else refused. Unlike a PIL ``I`` or ``F`` image (a file's content, of no other
      convention), an array or tensor out of its range is refused, not stretched;
    * alpha (PIL ``RGBA``, ``LA``, ``PA``, palette or colour-key transparency; a 4th channel):
      composited on white, ``c * a / 255 + 255 * (1 - a / 255)`` rounded, alike for all inputs.

    Raises ``ValueError`` (``TypeError`` for other types) saying what is wrong.
    """
    if isinstance(image, (str, Path)):
        return read_rgb(image)
    if isinstance(image, Image.Image):
        return _pil_to_rgb(image)
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.dtype == torch.bfloat16:  # numpy has no bfloat16
            t = t.float()
        what = f"image tensor of shape {tuple(t.shape)}"
        if t.ndim == 3 and t.shape[0] not in (1, 3, 4) and t.shape[2] in (1, 3, 4):
            raise ValueError(f"{what}: tensors are (C, H, W); for an H x W x C tensor pass t.permute(2, 0, 1)")
        if t.ndim == 4:
            raise ValueError(f"{what}: expected one image, (C, H, W), not a batch; pass t[0]")
        if t.ndim == 3:
            if t.shape[0] not in (1, 3, 4):
                raise ValueError(f"{what}: expected (H, W) or (C, H, W) with C = 1, 3 or 4")
            t = t.permute(1, 2, 0)
        return _array_to_rgb(t.numpy(), what)
    if isinstance(image, np.ndarray):
        what = f"image array of shape {image.shape}"
        if image.ndim == 3 and image.shape[2] not in (1, 3, 4) and image.shape[0] in (1, 3, 4):
            raise ValueError(f"{what}: arrays are H x W x C; for a (C, H, W) array pass a.transpose(1, 2, 0)")
        return _array_to_rgb(image, what)
    raise TypeError(f"image: expected a path, a PIL image, a numpy array or a torch tensor, got {type(image).__name__}")


def _pil_to_rgb(im: Image.Image) -> np.ndarray:
    """The PIL rules of :func:`to_rgb`."""
    if im.mode.startswith("I") or im.mode == "F":
        values = np.asarray(im)
        if im.mode.startswith("I;16") and values.dtype.kind == "u":
            return _grey(_scale_uint16(values))
        return _grey(_scale_deep(values, im.mode))
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        return _on_white(np.asarray(im.convert("RGBA"), dtype=np.uint8))
    return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))


def _scale_uint16(values: np.ndarray) -> np.ndarray:
    return np.round(values.astype(np.float64) / 257.0).astype(np.uint8)


def _scale_deep(values: np.ndarray, mode: str) -> np.ndarray:
    """A PIL ``I`` / ``F`` image to uint8: 16-bit data or [0, 1] floats by their range, anything else by min..max."""
    v = values.astype(np.float64)
    if not np.isfinite(v).all():
        raise ValueError(f"PIL mode {mode}: NaN or infinite values")
    lo, hi = (float(v.min()), float(v.max())) if v.size else (0.0, 0.0)
    if mode == "F" and lo >= 0 and hi <= 1:
        return np.round(v * 255).astype(np.uint8)
    if mode != "F" and lo >= 0 and hi <= 65535:
        return np.round(v / 257.0).astype(np.uint8)
    if hi == lo:
        return np.zeros(v.shape, dtype=np.uint8)
    return np.round((v - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _array_to_rgb(array: np.ndarray, what: str) -> np.ndarray:
    """The array rules of :func:`to_rgb` (channels last)."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise ValueError(f"{what}: expected H x W, H x W x 3 or H x W x 4 (arrays) or (C, H, W) (tensors)")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{what}: empty image")
    array = _values_to_uint8(array, what)
    if array.ndim == 2:
        return _grey(array)
    return _on_white(array) if array.shape[2] == 4 else np.ascontiguousarray(array)


def _values_to_uint8(array: np.ndarray, what: str) -> np.ndarray:
    kind = array.dtype.kind
    if array.dtype == np.uint8:
        return array
    if kind == "f":
        if not np.isfinite(array).all():
            raise ValueError(f"{what}: NaN or infinite values; expected RGB in [0, 1] (or uint8)")
        lo, hi = float(array.min()), float(array.max())
        if lo >= 0 and hi <= 1:
            return np.round(array.astype(np.float64) * 255).astype(np.uint8)
        if lo < 0:
            raise ValueError(
                f"{what}: {array.dtype} values {lo:.4g}..{hi:.4g}; expected RGB in [0, 1] (or uint8 0..255), not a "
                "normalised tensor: undo the model's normalisation first (x * std + mean)")
        raise ValueError(
            f"{what}: {array.dtype} values {lo:.4g}..{hi:.4g} look like [0, 255] floats; expected RGB in [0, 1] "
            "(or uint8): divide by 255, or convert with .round().to(torch.uint8) / np.round(a).astype(np.uint8)")
    if array.dtype == np.uint16:
        return _scale_uint16(array)
    if kind in "iu":
        lo, hi = int(array.min()), int(array.max())
        if lo >= 0 and hi <= 255:
            return array.astype(np.uint8)
        raise ValueError(f"{what}: {array.dtype} values {lo}..{hi} outside 0..255; integer images must hold 0..255 "
                         "(or be uint16, scaled / 257)")
    raise ValueError(f"{what}: {array.dtype} values are not an image (expected uint8, uint16, other integers in "
                     "0..255, or floats in [0, 1])")


def _grey(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[..., None], 3, axis=2)


def _on_white(rgba: np.ndarray) -> np.ndarray:
    """uint8 RGBA composited on a white background, rounded."""
    alpha = rgba[..., 3:].astype(np.float64) / 255.0
    return np.round(rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)


@dataclass
class LoadedImage:
    """One decoded image: its size and resized copy, and the SHA-256 of the file's bytes."""

    index: int  # position in the evaluated set (sorted file-name order)
    image_id: str
    original_size: tuple[int, int]  # (height, width); (0, 0) when decoding failed
    resized: np.ndarray | None  # H x W x 3 uint8, shorter side = tta.resize
    content_sha256: str = ""
    error: str | None = None
    decode_seconds: float = 0.0
    original: np.ndarray | None = None  # the decoded image, when the dataset keeps it (ensembles resize it again)

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
        keep_original: bool = False,
    ) -> None:
        self.items = list(items)
        self.resize = resize
        self.max_pixels = max_pixels
        self.keep_original = keep_original

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
        return LoadedImage(index, image_id, rgb.shape[:2], resized, digest, None, time.perf_counter() - start,
                           rgb if self.keep_original else None)


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
