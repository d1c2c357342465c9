"""Image-specific class saliency by back-propagation (Section 3 of the paper).

For an image already resized to shorter side 256 (``saliency.resize``):

1. crops: the 4 corner and the centre ``crop x crop`` windows and their horizontal
   reflections (10), or the centre window alone (1), see :func:`crop_windows`;
2. the image's class scores are the **logits** (never softmax) averaged over its crops;
   its classes are the ``top_k`` by mean logit, best first, then any requested extra
   classes (e.g. the ground truth) not already among them;
3. for each class ``c`` and crop, ``w = dS_c / dI`` where ``I`` is the crop as RGB in
   ``[0, 1]`` *before* the classifier's normalisation (so ``w`` is the normalised-space
   gradient divided by the channel's ``std``; the map is thus comparable across models
   with different normalisations); the crop's map is ``max_channels |w|``;
4. a reflected crop's map is flipped back; the crop maps are pasted into the resized
   frame and averaged where they overlap (pixels no crop covers are 0).

Cost: one forward pass over all crops of all images of a call, and, from that single
graph, one backward pass per class rank ``k`` (each computing the gradients of the
``k``-th class of every image at once). Gradients flow to the input only: parameters'
``.grad`` is never touched. :func:`naive_image_saliency` is the reference: one forward
and backward per class per crop.

Class indices are model output indices (sorted-WNID order for ImageNet classifiers).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from wsol_bench.models import Classifier
from wsol_bench.saliency.crops import CropWindow, crop_windows, paste_maps


@dataclass
class SaliencyResult:
    """Saliency of one image.

    ``logits``: ``(num_classes,)`` float32 mean logits over the crops. ``classes``:
    ``(K,)`` int64, the ``top_k`` by mean logit, best first, then the extra requested
    classes not among them. ``maps``: ``(K, H, W)`` float32, ``maps[k]`` the saliency of
    ``classes[k]`` in the resized frame (the frame of the input image).
    """

    logits: np.ndarray
    classes: np.ndarray
    maps: np.ndarray


@dataclass
class CropSaliency:
    """Per-crop saliency of one image (before pasting).

    ``crop_maps``: ``(K, n_crops, crop, crop)`` float32, map of class ``classes[k]`` on
    crop ``windows[i]`` in the orientation the network saw (a reflected crop's map is
    still reflected). ``frame``: ``(H, W)`` of the resized image.
    """

    logits: np.ndarray
    classes: np.ndarray
    crop_maps: np.ndarray
    windows: list[CropWindow]
    frame: tuple[int, int]

    def pasted(self) -> SaliencyResult:
        """Paste and average the crop maps into the resized frame."""
        maps = paste_maps(self.crop_maps, self.windows, self.frame)
        return SaliencyResult(logits=self.logits, classes=self.classes, maps=maps)


def _image_tensor(image: np.ndarray, device: torch.device) -> torch.Tensor:
    """``H x W x 3`` uint8 RGB -> ``(3, H, W)`` float32 in ``[0, 1]`` on ``device``."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    t = torch.from_numpy(np.ascontiguousarray(image)).to(device)
    return t.permute(2, 0, 1).float().div_(255.0)


def _model_layout(x: torch.Tensor) -> torch.Tensor:
    """On the CPU, a channels-last copy of the ``(N, 3, H, W)`` batch: oneDNN then runs the
    convolutions (and their backward) in NHWC without layout reorders (measured on
    EfficientNet-Lite0, 1 thread: 15-25% less CPU time per crop). Values are unchanged."""
    return x.contiguous(memory_format=torch.channels_last) if x.device.type == "cpu" else x


def use_heap_for_large_allocations() -> bool:
    """Opt-in, process-wide: make glibc serve large blocks from its heap and keep freed
    memory (``mallopt(M_MMAP_MAX, 0)``, ``M_TRIM_THRESHOLD`` 2 GiB).

    By default every block over 32 MiB is a fresh ``mmap``, so each large activation or
    gradient of a batched CPU backward page-faults its memory in again: measured on
    EfficientNet-Lite0 with 40 crops, about half of the CPU time was such system time.
    The cost: the process keeps its peak memory. Returns ``False`` (and does nothing)
    where the C library is not glibc.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    return bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, 2**31 - 1))


def _crops(image: torch.Tensor, windows: Sequence[CropWindow]) -> list[torch.Tensor]:
    out = []
    for w in windows:
        c = image[:, w.y0 : w.y0 + w.size, w.x0 : w.x0 + w.size]
        out.append(torch.flip(c, dims=(2,)) if w.flip else c)
    return out


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


def _check(classifier: Classifier, images: Sequence[np.ndarray], extra_classes: Sequence[Sequence[int]] | None) -> None:
    if extra_classes is not None and len(extra_classes) != len(images):
        raise ValueError(f"extra_classes has {len(extra_classes)} entries for {len(images)} images")
    if classifier.module.training:
        warnings.warn(
            f"{classifier.name}: the module is in training mode (dropout, batch statistics); "
            "saliency expects module.eval()",
            stacklevel=3,
        )


def crop_saliency(
    classifier: Classifier,
    images: Sequence[np.ndarray],
    crop: int = 224,
    crops: int = 10,
    top_k: int = 5,
    extra_classes: Sequence[Sequence[int]] | None = None,
    grad_mode: str = "loop",
) -> list[CropSaliency]:
    """Per-crop maps of each image: one forward pass of all crops, then the backward passes.

    ``images``: resized ``H x W x 3`` uint8 RGB arrays, sizes may differ (each side
    ``>= crop``). ``grad_mode``: ``'loop'`` (one backward per class rank, reusing the graph)
    or ``'vmap'`` (all ranks in one ``is_grads_batched`` backward; more memory, and on 2
    CPU cores measured slower than the loop).
    """
    _check(classifier, images, extra_classes)
    if grad_mode not in ("loop", "vmap"):
        raise ValueError(f"grad_mode must be 'loop' or 'vmap', not {grad_mode!r}")
    if not images:
        return []
    device = classifier.device
    windows = [crop_windows(im.shape[0], im.shape[1], crop, crops) for im in images]
    n_img, n_crops = len(images), len(windows[0])
    with torch.enable_grad():
        x = torch.stack([c for im, win in zip(images, windows) for c in _crops(_image_tensor(im, device), win)])
        x = _model_layout(x).requires_grad_(True)
        logits = classifier.module(classifier.normalise(x))
        if logits.ndim != 2 or logits.shape[0] != x.shape[0]:
            raise ValueError(
                f"{classifier.name}: expected ({x.shape[0]}, num_classes) scores, got {tuple(logits.shape)}"
            )
        num_classes = logits.shape[1]
        mean_logits = logits.detach().float().reshape(n_img, n_crops, num_classes).mean(dim=1).cpu().numpy()
        classes = [
            select_classes(mean_logits[i], top_k, None if extra_classes is None else extra_classes[i])
            for i in range(n_img)
        ]
        k_max = max(len(c) for c in classes)
        # targets[k, row]: the class whose gradient row `row` (crop of image row // n_crops) needs at rank k, or -1
        targets = torch.full((k_max, n_img * n_crops), -1, dtype=torch.long)
        for i, cls in enumerate(classes):
            targets[: len(cls), i * n_crops : (i + 1) * n_crops] = torch.from_numpy(cls)[:, None]
        targets = targets.to(device)
        onehot = torch.zeros((k_max, *logits.shape), dtype=logits.dtype, device=device)
        onehot.scatter_(2, targets.clamp(min=0)[..., None], (targets >= 0).to(logits.dtype)[..., None])
        maps = np.empty((k_max, n_img * n_crops, crop, crop), dtype=np.float32)
        if k_max and grad_mode == "vmap":
            (grads,) = torch.autograd.grad(logits, x, grad_outputs=onehot, is_grads_batched=True)
            maps[:] = grads.abs().amax(dim=2).float().cpu().numpy()
        else:
            for k in range(k_max):
                (grad,) = torch.autograd.grad(logits, x, grad_outputs=onehot[k], retain_graph=k < k_max - 1)
                maps[k] = grad.abs().amax(dim=1).float().cpu().numpy()
    out = []
    for i in range(n_img):
        rows = slice(i * n_crops, (i + 1) * n_crops)
        out.append(
            CropSaliency(
                logits=mean_logits[i].astype(np.float32),
                classes=classes[i],
                crop_maps=maps[: len(classes[i]), rows],
                windows=windows[i],
                frame=(int(images[i].shape[0]), int(images[i].shape[1])),
            )
        )
    return out


def image_saliency(
    classifier: Classifier,
    images: Sequence[np.ndarray],
    crop: int = 224,
    crops: int = 10,
    top_k: int = 5,
    extra_classes: Sequence[Sequence[int]] | None = None,
    grad_mode: str = "loop",
) -> list[SaliencyResult]:
    """Saliency maps of each image's top-``top_k`` classes (and ``extra_classes[i]``).

    ``images``: already-resized ``H x W x 3`` uint8 RGB arrays (shorter side
    ``saliency.resize``; sizes may differ), all pushed through one forward pass. Maps are
    in each image's own (resized) frame. See the module docstring for the method.
    """
    return [c.pasted() for c in crop_saliency(classifier, images, crop, crops, top_k, extra_classes, grad_mode)]


def naive_image_saliency(
    classifier: Classifier,
    images: Sequence[np.ndarray],
    crop: int = 224,
    crops: int = 10,
    top_k: int = 5,
    extra_classes: Sequence[Sequence[int]] | None = None,
) -> list[SaliencyResult]:
    """Reference implementation of :func:`image_saliency`, written for clarity.

    Per image: one forward per crop for the scores, then for every class and every crop
    its own forward and backward pass (batch of one).
    """
    _check(classifier, images, extra_classes)
    device, module = classifier.device, classifier.module
    results = []
    for i, image in enumerate(images):
        h, w = image.shape[:2]
        windows = crop_windows(h, w, crop, crops)
        crop_tensors = _crops(_image_tensor(image, device), windows)
        with torch.no_grad():
            scores = [
                module(classifier.normalise(_model_layout(c[None])))[0].float().cpu().numpy() for c in crop_tensors
            ]
        mean_logits = np.mean(scores, axis=0).astype(np.float32)
        classes = select_classes(mean_logits, top_k, None if extra_classes is None else extra_classes[i])
        maps = np.zeros((len(classes), h, w), dtype=np.float32)
        count = np.zeros((h, w), dtype=np.float32)
        for win, c in zip(windows, crop_tensors):
            count[win.y0 : win.y0 + crop, win.x0 : win.x0 + crop] += 1
            for k, cls in enumerate(classes):
                xk = _model_layout(c[None].clone()).requires_grad_(True)
                with torch.enable_grad():
                    score = module(classifier.normalise(xk))[0, int(cls)]
                    (grad,) = torch.autograd.grad(score, xk)
                m = grad[0].abs().amax(dim=0).cpu().numpy()
                if win.flip:
                    m = m[:, ::-1]
                maps[k, win.y0 : win.y0 + crop, win.x0 : win.x0 + crop] += m
        maps = np.where(count > 0, maps / np.maximum(count, 1), 0).astype(np.float32)
        results.append(SaliencyResult(logits=mean_logits, classes=classes, maps=maps))
    return results
