"""What the faithfulness evaluators (``deletion``, ``insertion``, ``road``) share: the frame
they perturb, the class they score, per-image seeds and the streaming mean with its interval.

* **Frame**: the ``crop x crop`` (224) centre window of the resized frame (the maps' frame,
  shorter side ``tta.resize`` = 256), the image and the ground-truth class's map cropped
  alike: RISE evaluates ``Resize(256) + CenterCrop(224)`` inputs. The window is the
  saliency's centre crop (:func:`wsol_bench.saliency.crops.crop_windows`: offsets
  ``(H - crop) // 2``, ``(W - crop) // 2``, rounded down). A frame smaller than the crop is
  the image's failure for that metric.
* **Class**: the ground-truth class, by its output index in the run's classifier
  (:meth:`MapSample.class_of`); an image without a map of it (never, in a run: the engine
  always adds the ground-truth class) has no state.
* **Speed**: the perturbed batches enter the network channels-last on the CPU
  (:func:`wsol_bench.saliency.backprop.model_layout`: faster on oneDNN; the values agree to
  float rounding).
* **Figures**: the mean over the images with a state, with a 95 % Student-t interval of the
  mean (``mean +- t(0.975, n - 1) s / sqrt(n)``, ``s`` the sample standard deviation;
  ``None`` below two images); images without a state (failed, or the metric failed on
  them: recorded in ``per_image.csv``) are left out and counted. Per-image values are kept
  in one float per image of the evaluated set, by position, so sharded, resumed and
  reordered runs give exactly the same figures.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch

from wsol_bench.boxes import ImageAnnotation
from wsol_bench.metrics.base import Evaluator, ImageResult, MapSample

#: RISE's input frame: the 224 x 224 centre crop of the image resized to shorter side 256.
CROP = 224


def centre_crop(image: np.ndarray, saliency: np.ndarray, crop: int = CROP) -> tuple[np.ndarray, np.ndarray]:
    """``(image, map)`` cut to the ``crop x crop`` centre window of their common ``H x W``
    frame (offsets rounded down); ``ValueError`` when the frame is smaller or they differ."""
    h, w = image.shape[:2]
    if tuple(saliency.shape) != (h, w):
        raise ValueError(f"the map is {saliency.shape[1]}x{saliency.shape[0]} but the image {w}x{h}")
    if h < crop or w < crop:
        raise ValueError(f"the {w}x{h} frame is smaller than the {crop}x{crop} crop (lower the metric's crop "
                         "or raise the resize)")
    y, x = (h - crop) // 2, (w - crop) // 2
    return image[y:y + crop, x:x + crop], saliency[y:y + crop, x:x + crop]


def rgb_tensor(image: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """An ``H x W x 3`` uint8 image as a ``(3, H, W)`` float32 tensor in ``[0, 1]`` on ``device``."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an H x W x 3 uint8 image, got {image.dtype} {image.shape}")
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div(255).to(device)


def image_seed(seed: int, image_id: str) -> int:
    """A 63-bit seed from ``seed`` and the image's id (BLAKE2b): the same in any process or order."""
    digest = hashlib.blake2b(np.int64(seed).tobytes() + image_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def mean_interval(values: Sequence[float] | np.ndarray, level: float = 0.95) -> tuple[float | None, list[float] | None]:
    """``(mean, [lo, hi])`` of ``values`` with the Student-t interval of the mean; ``(None,
    None)`` for no value, an interval of ``None`` for one."""
    from scipy.stats import t

    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return None, None
    mean = float(v.mean())
    if v.size < 2:
        return mean, None
    half = float(t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return mean, [mean - half, mean + half]


@dataclass(frozen=True)
class PerturbationSample:
    """What a faithfulness metric perturbs: the crop (``(3, crop, crop)`` float32 RGB in
    ``[0, 1]`` on the classifier's device), its map (``(crop, crop)`` float32), the target class."""

    image: torch.Tensor
    saliency: np.ndarray
    target: int


def perturbation_sample(sample: MapSample, crop: int, metric: str) -> PerturbationSample | None:
    """The ground-truth class's crop, map and index from ``sample``; ``None`` without its map.
    ``ValueError`` naming ``metric`` when the sample has no image, classifier or class indices."""
    label = sample.annotation.label
    saliency = sample.map_of(label)
    if saliency is None:
        return None
    if sample.image is None or sample.classifier is None:
        raise ValueError(f"{metric} needs the image and the classifier (it cannot score stored score maps)")
    target = sample.class_of(label)
    if target is None:
        raise ValueError(f"{metric}: the classifier's index of the class {label} is unknown")
    image, saliency = centre_crop(sample.image, np.asarray(saliency), crop)
    return PerturbationSample(rgb_tensor(image, sample.classifier.device), np.asarray(saliency, np.float32), target)


@dataclass
class PerImageMeans(Evaluator):
    """Base of the faithfulness evaluators: each image's state is a mapping with a float for
    each of :attr:`columns`; :meth:`compute` gives each column's mean, interval and count
    (see the module docstring). Subclasses set ``name``, ``columns`` and ``image_state``."""

    columns: ClassVar[tuple[str, ...]] = ()
    count_key: ClassVar[str] = ""  # the counts are <count_key>_n_images and <count_key>_n_without_state
    needs_maps: ClassVar[bool] = True
    needs_model: ClassVar[bool] = True
    _row: dict[str, int] = field(init=False, repr=False, default_factory=dict)

    def start(self, ground_truth: Mapping[str, ImageAnnotation]) -> None:
        if not ground_truth:
            raise ValueError(f"{self.name} evaluator: the ground truth is empty")
        self._row = {image_id: i for i, image_id in enumerate(ground_truth)}
        self._seen = np.zeros(len(self._row), dtype=bool)
        self._values = np.full((len(self._row), len(self.columns)), np.nan)

    def accumulate(self, results: Sequence[ImageResult]) -> pd.DataFrame:
        ids, rows = [], []
        for r in results:
            row = self._row.get(r.image_id)
            if row is None:
                raise ValueError(f"{self.name}: image {r.image_id!r} is not in the evaluated set")
            if self._seen[row]:
                raise ValueError(f"{self.name}: image {r.image_id!r} accumulated twice")
            self._seen[row] = True
            state = r.states.get(self.name) if r.status == "ok" else None
            if state is not None:
                values = [float(state[c]) for c in self.columns]
                if not all(math.isfinite(v) for v in values):
                    raise ValueError(f"{self.name}: image {r.image_id!r} has a non-finite state {state}")
                self._values[row] = values
            ids.append(r.image_id)
            rows.append(self._values[row])
        table = pd.DataFrame(np.asarray(rows, dtype=np.float64).reshape(len(ids), len(self.columns)),
                             columns=list(self.columns))
        table.insert(0, "image_id", ids)
        return table

    def compute(self) -> dict[str, Any]:
        have = ~np.isnan(self._values[:, 0])
        out: dict[str, Any] = {}
        for k, column in enumerate(self.columns):
            mean, interval = mean_interval(self._values[have, k])
            out[column] = mean
            out[f"{column}_ci95"] = interval
            out[f"{column}_std"] = float(self._values[have, k].std(ddof=1)) if have.sum() > 1 else None
        key = self.count_key or self.name
        out[f"{key}_n_images"] = int(have.sum())
        out[f"{key}_n_without_state"] = int(len(self._row) - have.sum())
        return out


__all__ = ["CROP", "PerImageMeans", "PerturbationSample", "RiseAuc", "centre_crop", "image_seed", "mean_interval",
           "perturbation_sample", "rgb_tensor"]


@dataclass
class RiseAuc(PerImageMeans):
    """Deletion or insertion (RISE) of the ground-truth class's map on the centre crop: the
    area under the curve of its softmax probability (:mod:`wsol_bench.metrics.perturbation`).

    Parameters: ``n_steps`` (56: 896 pixels a step on 224 x 224), ``baseline`` (``mean``,
    ``black`` or ``blur``; ``None``: the paper's, ``mean`` for deletion and ``blur`` for
    insertion), ``batch_size`` (forward passes at a time: 4 was the fastest per image on one
    CPU thread, docs/faithfulness.md), ``crop`` (224). The state of an image: ``auc``, and the
    probability on the image (``p_image``) and on the baseline (``p_baseline``).
    """

    mode: ClassVar[str] = ""
    n_steps: int = 56
    baseline: str | None = None
    batch_size: int = 4
    crop: int = CROP

    def __post_init__(self) -> None:
        from wsol_bench.metrics.perturbation import BASELINES
        from wsol_bench.registry import require

        require(isinstance(self.n_steps, int) and 1 <= self.n_steps <= 100_000, "n_steps", self.n_steps,
                "an integer between 1 and 100000")
        require(self.baseline is None or self.baseline in BASELINES, "baseline", self.baseline,
                f"null (the paper's) or one of {', '.join(BASELINES)}")
        require(isinstance(self.batch_size, int) and self.batch_size >= 1, "batch_size", self.batch_size,
                "an integer >= 1")
        require(isinstance(self.crop, int) and self.crop >= 8, "crop", self.crop, "an integer >= 8 (pixels)")

    @property
    def substrate(self) -> str:
        """The baseline used: the parameter, else RISE's for the mode."""
        return self.baseline or ("mean" if self.mode == "deletion" else "blur")

    def image_state(self, sample: MapSample) -> dict[str, float] | None:
        from wsol_bench.metrics.perturbation import auc, make_baseline, perturbation_curve
        from wsol_bench.saliency.backprop import model_layout

        item = perturbation_sample(sample, self.crop, self.name)
        if item is None:
            return None
        classifier = sample.classifier
        baseline = make_baseline(self.substrate, item.image, classifier.mean, classifier.std, space="rgb")
        curve = perturbation_curve(lambda x: classifier.logits(model_layout(x)), item.image, item.saliency,
                                   item.target, self.mode, baseline, self.n_steps, self.batch_size)
        start, end = (curve[0], curve[-1]) if self.mode == "deletion" else (curve[-1], curve[0])
        return {self.columns[0]: auc(curve), "p_image": float(start), "p_baseline": float(end)}

    def compute(self) -> dict[str, Any]:
        out = super().compute()
        out.update({f"{self.name}_baseline": self.substrate, f"{self.name}_n_steps": self.n_steps,
                    f"{self.name}_crop": self.crop})
        return out
