"""The model-parameter randomisation test (Adebayo et al., "Sanity checks for saliency maps",
NeurIPS 2018) for any saliency methods, as plain Python (``task=sanity`` is a thin layer).

For each image (the ``crop x crop`` centre crop of the image resized to shorter side
``resize``, as the harness's saliency sees its centre crop) and its ground-truth class, and
for each method: the trained model's map, then the map of the same class from each
randomised copy of the model (:mod:`wsol_bench.models.randomisation`: stages from the
logits down; *cascading*: stages ``0 .. k`` re-initialised, *independent*: stage ``k``
alone; seeded copies, the original never changed), and their similarity to the trained map:
Spearman's rank correlation of absolute values and SSIM of the min-max scaled maps
(:mod:`wsol_bench.metrics.similarity`). A method whose map depends on the learnt weights
drifts towards 0; one that only reflects the input (an edge detector, a random map) stays
near 1.

Stage index ``0`` of the results is the trained model itself (similarity 1 by
construction, the start of the paper's curves); index ``k >= 1`` is randomisation stage
``k - 1``. Use the classifier as built (:func:`wsol_bench.models.build_classifier`), not
BatchNorm-folded: folding merges the normalisation layers into the convolutions, which
changes what a stage re-initialises.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from wsol_bench.models import Classifier
from wsol_bench.models.randomisation import MODES, Stage, randomisation_stages, randomised_copy
from wsol_bench.registry import require
from wsol_bench.saliency import SALIENCY_METHODS, SaliencyMethod, attribution_maps, saliency_method

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

MODE_CHOICES = (*MODES, "both")
TRAINED = "trained"
#: ``sanity.methods`` entries besides the registered methods: SmoothGrad (the noise tunnel
#: around the gradient; its ``sanity.params.smoothgrad`` are the tunnel's)
SMOOTHGRAD = "smoothgrad"


@dataclass(frozen=True)
class SanitySettings:
    """The ``sanity`` section: which methods (registered names, ``smoothgrad``, or
    ``package.module:Class``), which randomisation (``cascading``, ``independent`` or
    ``both``), the seed of the re-initialisations, how many images get the figure of maps,
    the frame (``resize``, ``crop``), images per saliency call, and each method's
    parameters (``params[method]``, e.g. ``{"smoothgrad": {"n_samples": 8}}``)."""

    methods: tuple[str, ...] = ("gradient", "guided_backprop", "gradcam")
    mode: str = "cascading"
    seed: int = 0
    figures: int = 1
    resize: int = 256
    crop: int = 224
    batch_images: int = 4
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        require(len(self.methods) > 0 and len(set(self.methods)) == len(self.methods), "methods", list(self.methods),
                "a non-empty list of distinct method names")
        require(self.mode in MODE_CHOICES, "mode", self.mode, f"one of {', '.join(MODE_CHOICES)}")
        require(isinstance(self.seed, int) and 0 <= self.seed < 2**63, "seed", self.seed, "a non-negative integer")
        require(self.figures >= 0, "figures", self.figures, ">= 0 (images whose maps are drawn)")
        require(self.crop >= 8, "crop", self.crop, ">= 8")
        require(self.resize >= self.crop, "resize", self.resize, f">= crop ({self.crop})")
        require(self.batch_images >= 1, "batch_images", self.batch_images, ">= 1")
        extra = sorted(set(self.params) - set(self.methods))
        require(not extra, "params", dict(self.params), f"parameters of listed methods only ({', '.join(extra)} is not "
                "in sanity.methods)")

    @property
    def modes(self) -> tuple[str, ...]:
        return MODES if self.mode == "both" else (self.mode,)


def sanity_methods(settings: SanitySettings) -> dict[str, SaliencyMethod]:
    """The methods of ``settings`` by name, built with their ``params`` (checked; errors
    name ``sanity.params.<method>.<key>``)."""
    methods = {}
    for name in settings.methods:
        params = dict(settings.params.get(name) or {})
        where = f"sanity.params.{name}"
        try:
            if name == SMOOTHGRAD and name not in SALIENCY_METHODS:
                inner = params.pop("method", "gradient")
                methods[name] = saliency_method(inner, noise_tunnel=params)
            else:
                methods[name] = saliency_method(name, **params)
        except ValueError as err:  # name the sanity key, not the saliency one
            text = str(err).replace("saliency.method=", "sanity.methods: ")
            for prefix in ("saliency.noise_tunnel.", "saliency."):
                text = text.replace(prefix, where + ".")
            raise ValueError(text) from None
    return methods


def centre_crop(image: np.ndarray, crop: int) -> np.ndarray:
    """The ``crop x crop`` centre window of an ``H x W x 3`` image (offsets rounded down, as
    the saliency's centre crop); ``ValueError`` when it is smaller."""
    h, w = image.shape[:2]
    if h < crop or w < crop:
        raise ValueError(f"the {w}x{h} image is smaller than the {crop}x{crop} crop")
    y, x = (h - crop) // 2, (w - crop) // 2
    return np.ascontiguousarray(image[y:y + crop, x:x + crop])


@dataclass(frozen=True)
class SanityImage:
    """One image of the test: its id, the crop (``crop x crop x 3`` uint8 RGB, as the network
    sees it before normalisation) and the class whose maps are compared (output index)."""

    image_id: str
    image: np.ndarray
    target: int


@dataclass
class SanityResult:
    """``table``: one row per method, mode, stage and image (``stage_index`` 0 is the trained
    model; ``stage`` its name, ``trained`` or the randomisation stage's), with ``spearman``
    and ``ssim``; ``stages``: the randomisation stages (logits first); ``maps[image_id][mode][method]``:
    the trained map then one per stage, for the images kept for figures; ``images``: their crops."""

    table: pd.DataFrame
    stages: list[Stage]
    maps: dict[str, dict[str, dict[str, list[np.ndarray]]]]
    images: dict[str, np.ndarray]

    @property
    def stage_names(self) -> list[str]:
        """``trained`` then the stages' names (the x axis of the figures)."""
        return [TRAINED, *(s.name for s in self.stages)]

    def summary(self) -> pd.DataFrame:
        """Mean and standard deviation over images per method, mode and stage."""
        grouped = self.table.groupby(["method", "mode", "stage_index", "stage"], sort=False)
        out = grouped.agg(n_images=("image_id", "size"), spearman_mean=("spearman", "mean"),
                          spearman_std=("spearman", "std"), ssim_mean=("ssim", "mean"), ssim_std=("ssim", "std"))
        return out.reset_index()

    def similarities(self, mode: str) -> dict[str, dict[str, np.ndarray]]:
        """``{"Spearman (abs)": {method: (images, stages)}, "SSIM": ...}`` for :func:`similarity_figure`."""
        out: dict[str, dict[str, np.ndarray]] = {"Spearman rank correlation (abs)": {}, "SSIM": {}}
        rows = self.table[self.table["mode"] == mode]
        for method in dict.fromkeys(rows["method"]):
            part = rows[rows["method"] == method]
            for measure, column in zip(out, ("spearman", "ssim")):
                out[measure][method] = part.pivot(index="image_id", columns="stage_index", values=column).to_numpy()
        return out


def method_maps(method: SaliencyMethod, classifier: Classifier, images: Sequence[SanityImage],
                batch_images: int) -> list[np.ndarray]:
    """The ``(crop, crop)`` float32 map of each image's target under ``classifier``, in calls
    of ``batch_images`` images."""
    out: list[np.ndarray] = []
    for start in range(0, len(images), batch_images):
        chunk = images[start:start + batch_images]
        crops = torch.stack([torch.from_numpy(im.image).permute(2, 0, 1) for im in chunk]).float().div(255)
        targets = torch.tensor([im.target for im in chunk], dtype=torch.int64)
        maps = attribution_maps(method, classifier, crops.to(classifier.device), targets.to(classifier.device))
        out.extend(m.numpy().astype(np.float32) for m in maps)
    return out


def randomisation_test(
    classifier: Classifier,
    methods: Mapping[str, SaliencyMethod],
    images: Sequence[SanityImage],
    modes: Sequence[str] = ("cascading",),
    seed: int = 0,
    keep_maps: int = 1,
    batch_images: int = 4,
) -> SanityResult:
    """Run the test (module docstring) for ``methods`` (by the names the results use) on
    ``images``; ``modes``: ``cascading`` and/or ``independent``; ``keep_maps``: the first
    images whose maps are kept for figures."""
    require(len(images) > 0, "images", len(images), "at least one image")
    require(all(m in MODES for m in modes) and len(modes) > 0, "modes", list(modes), f"some of {', '.join(MODES)}")
    crop = images[0].image.shape[0]
    stages = randomisation_stages(classifier.module, input_size=crop)
    kept = [im.image_id for im in images[:keep_maps]]
    rows: list[dict[str, Any]] = []
    maps: dict[str, dict[str, dict[str, list[np.ndarray]]]] = {i: {m: {} for m in modes} for i in kept}
    trained = {name: method_maps(method, classifier, images, batch_images) for name, method in methods.items()}
    for mode in modes:
        for name in methods:
            for im, m in zip(images, trained[name]):
                rows.append(_row(name, mode, 0, TRAINED, im.image_id, m, m))
                if im.image_id in maps:
                    maps[im.image_id][mode][name] = [m]
        for j, stage in enumerate(stages):
            log.info("sanity: %s randomisation, stage %d/%d (%s)", mode, j + 1, len(stages), stage.name)
            module = randomised_copy(classifier.module, stages, mode, j, seed)
            copy = replace(classifier, module=module,
                           weights_id=f"{classifier.weights_id}+randomised:{mode}:{j}:seed{seed}")
            for name, method in methods.items():
                for im, ref, m in zip(images, trained[name], method_maps(method, copy, images, batch_images)):
                    rows.append(_row(name, mode, j + 1, stage.name, im.image_id, ref, m))
                    if im.image_id in maps:
                        maps[im.image_id][mode][name].append(m)
            del module, copy
    import pandas as pd

    table = pd.DataFrame(rows, columns=["method", "mode", "stage_index", "stage", "image_id", "spearman", "ssim"])
    return SanityResult(table, stages, maps, {im.image_id: im.image for im in images[:keep_maps]})


def _row(method: str, mode: str, index: int, stage: str, image_id: str, trained: np.ndarray,
         randomised: np.ndarray) -> dict[str, Any]:
    from wsol_bench.metrics.similarity import rank_correlation, ssim

    return {"method": method, "mode": mode, "stage_index": index, "stage": stage, "image_id": image_id,
            "spearman": rank_correlation(trained, randomised, absolute=True), "ssim": ssim(trained, randomised)}


def write_sanity_outputs(result: SanityResult, out_dir: str | Path, title: str = "") -> dict[str, Any]:
    """``sanity.csv`` (every row), ``sanity_summary.csv`` (means per method, mode and stage),
    ``sanity.png`` (the maps of the first image: rows methods, columns the trained model and
    the stages) and ``sanity_curves.png`` (similarities against the stages) for the first
    mode; for a second mode the figures are ``sanity_<mode>.png`` and
    ``sanity_curves_<mode>.png``; further images kept get ``sanity_<image_id>[_<mode>].png``.
    Returns the headline: per mode and method, the mean similarities at the last stage."""
    from wsol_bench.figures import save_figure
    from wsol_bench.figures.sanity import sanity_figure, similarity_figure

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result.table.to_csv(out / "sanity.csv", index=False)
    summary = result.summary()
    summary.to_csv(out / "sanity_summary.csv", index=False)
    modes = list(dict.fromkeys(result.table["mode"]))
    names = result.stage_names
    for k, mode in enumerate(modes):
        suffix = "" if k == 0 else f"_{mode}"
        what = "cascading: stages from the logits down to the column's" if mode == "cascading" else \
            "independent: the column's stage alone"
        for i, (image_id, by_mode) in enumerate(result.maps.items()):
            fig = sanity_figure(result.images[image_id], by_mode[mode], names[1:],
                                title=f"{title}{image_id}: maps after randomisation ({what})")
            save_figure(fig, out / (f"sanity{suffix}.png" if i == 0 else f"sanity_{image_id}{suffix}.png"))
        fig = similarity_figure(names, result.similarities(mode),
                                title=f"{title}similarity to the trained model's map ({mode} randomisation, "
                                      f"{result.table['image_id'].nunique()} images; mean +- 1 sd)")
        save_figure(fig, out / f"sanity_curves{suffix}.png")
    last = summary[summary["stage_index"] == summary["stage_index"].max()]
    return {mode: {r.method: {"spearman": float(r.spearman_mean), "ssim": float(r.ssim_mean)}
                   for r in last[last["mode"] == mode].itertuples()} for mode in modes}


__all__ = ["MODE_CHOICES", "SanityImage", "SanityResult", "SanitySettings", "centre_crop", "method_maps",
           "randomisation_test", "sanity_methods", "write_sanity_outputs"]
