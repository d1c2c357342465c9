"""Visualising what a classifier has learnt: class model images (Section 2 of the paper)."""

from wsol_bench.visualisation.class_model import (
    ClassModelResult,
    ClassSpec,
    class_model_images,
    resolve_classes,
    to_rgb,
)

__all__ = ["ClassModelResult", "ClassSpec", "class_model_images", "resolve_classes", "to_rgb"]
