"""Saliency map -> object box (Section 3.1 of the paper), and baselines.

Conventions shared by every method:

* images are ``H x W x 3`` ``uint8`` **RGB**; saliency maps are ``(H, W)`` float arrays in
  the same frame as the image passed to :meth:`Segmenter.prepare`;
* boxes are 0-based **inclusive** ``(xmin, ymin, xmax, ymax)`` in that frame, clipped to
  it (:mod:`wsol_bench.boxes`);
* a segmenter is a plain picklable object holding only its configuration: call
  :meth:`Segmenter.prepare` once per image and :meth:`Segmenter.localise` once per class
  map of that image. The prepared state is process-local (the GraphCut one holds a
  PyMaxflow graph, which does not pickle): prepare in the process that localises.
* A degenerate map never raises: the box is the whole image and
  :attr:`Localisation.fallback` says why (see :mod:`wsol_bench.segmentation.components`).

Methods (``cfg.method``): ``graphcut`` (the paper's), ``grabcut``, ``threshold`` (the
CAM convention), ``full_image`` and ``center`` (baselines that ignore the map).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from wsol_bench.config import SegmentationConfig

METHODS: tuple[str, ...] = ("graphcut", "grabcut", "threshold", "full_image", "center")


@dataclass
class Localisation:
    """Result of localising one class in one image.

    ``box``: 0-based inclusive ``(xmin, ymin, xmax, ymax)`` in the frame of the image given
    to the segmenter, clipped to it. ``mask``: ``(H, W)`` bool object mask in that frame
    (``None`` for box-only baselines and for fallbacks). ``fallback``: ``None``, or why the
    whole-image box was returned (``'nan_map'``, ``'constant_map'``, ``'empty_foreground'``,
    ``'too_few_seeds'``, ``'nonpositive_map'``).
    """

    box: tuple[int, int, int, int]
    mask: np.ndarray | None
    fallback: str | None


class Segmenter(Protocol):
    """Turns (image, class saliency map) pairs into boxes; see the module docstring."""

    def prepare(self, image: np.ndarray) -> Any:
        """Per-image state (``image``: ``H x W x 3`` uint8 RGB), reused for all its classes."""
        ...

    def localise(self, prepared: Any, saliency: np.ndarray) -> Localisation:
        """Box of one class; ``saliency`` is ``(H, W)`` in the frame of the prepared image."""
        ...


def as_segmentation_config(cfg: Any) -> SegmentationConfig:
    """A plain :class:`SegmentationConfig` copy of ``cfg`` (dataclass, DictConfig or mapping)."""
    if isinstance(cfg, SegmentationConfig):
        return SegmentationConfig(**vars(cfg))
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(cfg, DictConfig):
            cfg = OmegaConf.to_container(cfg, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf ships with hydra
        pass
    if isinstance(cfg, dict):
        return SegmentationConfig(**cfg)
    raise TypeError(f"expected a SegmentationConfig, DictConfig or dict, got {type(cfg).__name__}")


def validate_config(cfg: SegmentationConfig) -> None:
    """Raise ``ValueError`` naming the first ``segmentation.*`` key with an invalid value."""
    checks: list[tuple[bool, str]] = [
        (cfg.method in METHODS, f"method must be one of {', '.join(METHODS)}, got {cfg.method!r}"),
        (0.0 <= cfg.bg_quantile < cfg.fg_quantile <= 1.0,
         f"need 0 <= bg_quantile < fg_quantile <= 1, got {cfg.bg_quantile}, {cfg.fg_quantile}"),
        (cfg.gmm_components >= 1, f"gmm_components must be >= 1, got {cfg.gmm_components}"),
        (cfg.pairwise_weight >= 0, f"pairwise_weight must be >= 0, got {cfg.pairwise_weight}"),
        (cfg.max_side is None or cfg.max_side >= 1, f"max_side must be None or >= 1, got {cfg.max_side}"),
        (cfg.smooth_sigma >= 0, f"smooth_sigma must be >= 0, got {cfg.smooth_sigma}"),
        (cfg.keep_components in ("largest", "all"),
         f"keep_components must be 'largest' or 'all', got {cfg.keep_components!r}"),
        (cfg.grabcut_iterations >= 1, f"grabcut_iterations must be >= 1, got {cfg.grabcut_iterations}"),
        (0.0 <= cfg.threshold < 1.0, f"threshold must be in [0, 1), got {cfg.threshold}"),
        (0.0 < cfg.center_fraction <= 1.0, f"center_fraction must be in (0, 1], got {cfg.center_fraction}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(f"segmentation.{message}")


def build_segmenter(cfg: Any) -> Segmenter:
    """The segmenter named by ``cfg.method``, configured by the rest of ``cfg``.

    ``cfg`` is a :class:`wsol_bench.config.SegmentationConfig` (or the ``segmentation``
    DictConfig of a Hydra run); it is copied, so later changes to ``cfg`` do not leak in.
    """
    config = as_segmentation_config(cfg)
    validate_config(config)
    if config.method == "graphcut":
        from wsol_bench.segmentation.graphcut import GraphCutSegmenter

        return GraphCutSegmenter(config)
    if config.method == "grabcut":
        from wsol_bench.segmentation.grabcut import GrabCutSegmenter

        return GrabCutSegmenter(config)
    if config.method == "threshold":
        from wsol_bench.segmentation.threshold import ThresholdSegmenter

        return ThresholdSegmenter(config)
    from wsol_bench.segmentation.baselines import CenterSegmenter, FullImageSegmenter

    if config.method == "full_image":
        return FullImageSegmenter(config)
    return CenterSegmenter(config)


__all__ = [
    "METHODS",
    "Localisation",
    "Segmenter",
    "as_segmentation_config",
    "build_segmenter",
    "validate_config",
]
