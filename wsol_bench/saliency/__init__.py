"""Image-specific class saliency (Section 3 of the paper): crops, gradients, figures.

:mod:`wsol_bench.saliency.crops` (frames and crop windows), :mod:`wsol_bench.saliency.gradient`
(:func:`~wsol_bench.saliency.gradient.image_saliency`), :mod:`wsol_bench.saliency.figures`
(imported on demand: it loads matplotlib).
"""

from wsol_bench.saliency.crops import CropWindow, crop_windows, map_to_original, resize_shorter_side
from wsol_bench.saliency.gradient import SaliencyResult, image_saliency, naive_image_saliency

__all__ = [
    "CropWindow",
    "SaliencyResult",
    "crop_windows",
    "image_saliency",
    "map_to_original",
    "naive_image_saliency",
    "resize_shorter_side",
]
