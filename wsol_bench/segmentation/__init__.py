"""Box extractors: saliency map -> object box (Section 3.1 of the paper), and baselines.

Conventions shared by every extractor:

* images are ``H x W x 3`` ``uint8`` **RGB**; saliency maps are ``(H, W)`` float arrays in
  the same frame as the image passed to :meth:`BoxExtractor.prepare`;
* boxes are :class:`wsol_bench.boxes.Box` (0-based **inclusive**) in that frame, clipped to it;
* an extractor is a frozen dataclass of its parameters (picklable, no global state): call
  :meth:`BoxExtractor.prepare` once per image and :meth:`BoxExtractor.localise` once per
  class map of that image. The prepared state is process-local (the GraphCut one holds a
  PyMaxflow graph, which does not pickle): prepare in the process that localises;
* a degenerate map never raises: the box is the whole image and
  :attr:`Localisation.fallback` says why (see :mod:`wsol_bench.segmentation.components`).

Extractors (``segmentation.method``, :data:`BOX_EXTRACTORS`): ``graphcut`` (the paper's),
``grabcut``, ``threshold`` (the CAM convention), ``full_image`` and ``center`` (baselines
that ignore the map).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from wsol_bench.boxes import Box, Size
from wsol_bench.registry import Registry


@dataclass
class Localisation:
    """Result of localising one class in one image.

    ``box``: in the frame of the image given to the extractor, clipped to it. ``mask``:
    ``(H, W)`` bool object mask in that frame (``None`` for box-only baselines and for
    fallbacks). ``fallback``: ``None``, or why the whole-image box was returned
    (``'nan_map'``, ``'constant_map'``, ``'empty_foreground'``, ``'too_few_seeds'``,
    ``'nonpositive_map'``). ``seeds``: ``(foreground, background)`` seed masks in the
    working frame, for methods that use seeds (figures).
    """

    box: Box
    mask: np.ndarray | None
    fallback: str | None
    seeds: tuple[np.ndarray, np.ndarray] | None = None


class BoxExtractor:
    """Base class: turns (image, class saliency map) pairs into boxes (see the module docstring)."""

    name: ClassVar[str] = ""

    def prepare(self, image: np.ndarray) -> Any:
        """Per-image state (``image``: ``H x W x 3`` uint8 RGB), reused for all its classes."""
        raise NotImplementedError

    def localise(self, prepared: Any, saliency: np.ndarray) -> Localisation:
        """Box of one class; ``saliency`` is ``(H, W)`` in the frame of the prepared image."""
        raise NotImplementedError


@dataclass
class LocalisedImage:
    """The boxes of one image's maps: ``boxes[k]`` for ``maps[k]`` in original-image pixels
    (0-based inclusive, unlabelled), and the extractor's results in the maps' frame
    (``localisations[k]``: masks, seeds, fallbacks)."""

    boxes: list[Box]
    localisations: list[Localisation]

    @property
    def fallbacks(self) -> list[str | None]:
        return [loc.fallback for loc in self.localisations]


def localise_image(extractor: BoxExtractor, image: np.ndarray, maps: Sequence[np.ndarray] | np.ndarray,
                   original_size: Size | None = None) -> LocalisedImage:
    """One box per map of ``image`` (``H x W x 3`` uint8 RGB, the maps' frame): the image's
    terms prepared once, each map localised, each box mapped to ``original_size``
    (``(height, width)``; default: the maps' frame). The one per-image loop of the engine,
    the Python API, the figures and the benchmarks. An extractor returning an inverted box
    or one outside the frame is an error naming it."""
    prepared = extractor.prepare(image)
    frame = (int(image.shape[0]), int(image.shape[1]))
    boxes, localisations = [], []
    for saliency in maps:
        loc = extractor.localise(prepared, saliency)
        name = extractor.name or type(extractor).__qualname__
        if not isinstance(loc, Localisation) or not isinstance(loc.box, Box):
            raise TypeError(f"box extractor {name} returned {type(loc).__name__}, not a Localisation with a Box")
        loc.box.validate(frame, f"box extractor {name}")
        localisations.append(loc)
        boxes.append(loc.box.scaled(frame, original_size or frame))
    return LocalisedImage(boxes, localisations)


#: ``segmentation.method`` -> the extractor's class (a frozen dataclass of its parameters).
BOX_EXTRACTORS: Registry[type[BoxExtractor]] = Registry("segmentation.method", {
    "graphcut": "wsol_bench.segmentation.graphcut:GraphCut",
    "grabcut": "wsol_bench.segmentation.grabcut:GrabCut",
    "threshold": "wsol_bench.segmentation.threshold:Threshold",
    "full_image": "wsol_bench.segmentation.baselines:FullImage",
    "center": "wsol_bench.segmentation.baselines:Center",
})


def box_extractor(name: str, **params: Any) -> BoxExtractor:
    """The extractor called ``name`` (or ``package.module:Class``) with ``params``, checked."""
    return BOX_EXTRACTORS.create(name, params, "segmentation")


__all__ = ["BOX_EXTRACTORS", "BoxExtractor", "Localisation", "LocalisedImage", "box_extractor", "localise_image"]
