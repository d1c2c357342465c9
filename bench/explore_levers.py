"""Offline exploration of localisation levers on the 200 shared validation images (issue 24).

Two steps, both on ``../shared/ilsvrc_val_sample`` (``--data``; the 200 images of
``dataset=shared_sample``):

1. ``compute SOURCE ...``: the saliency maps of one *source* (model, method, crops) through
   the harness's own protocol (:func:`wsol_bench.saliency.image_saliency` on the
   BatchNorm-folded classifier, as a run computes them), for the image's top-5 classes and
   every class any lever may need (the top-5 of each classifier in :data:`CLASSIFIERS` and the
   ground truth: the ``logits`` step lists them), one ``.npz`` per image under
   ``--cache/<source>/`` (float32 maps, brought to the 256 frame bilinearly, the mean logits, the
   seconds the image took). ``logits`` must run first; ``costs`` prints seconds per image.
   An ensemble source (:data:`ENSEMBLES`) goes through the harness's own
   :func:`wsol_bench.saliency.ensemble.ensemble_saliency` and keeps its ranker's frame
   (evaluate it with ``--frame`` set to the ranker's resize).
2. ``evaluate --map SPEC ...``: boxes for each lever (map recipe, whose classes, one box per
   class or one class-agnostic box, box extractor settings from the harness's config) and the
   figures of the harness's evaluators (:class:`~wsol_bench.metrics.ilsvrc.IlsvrcLocalisation`:
   top-1 / top-5 localisation error and GT-known error with 95% Wilson intervals;
   :class:`~wsol_bench.metrics.maxboxacc.MaxBoxAcc`: MaxBoxAccV2), images 1-100 and 101-200
   separately.

Map recipes (``--map``), every map brought to the 256 frame of the image (bilinear):

* ``SRC``: the source's map of the class;
* ``avg:SRC1,SRC2,...``: the mean of the sources' maps, each divided by its maximum;
* ``sum:SRC1,SRC2,...``: the plain mean of the sources' maps (no normalisation);
* ``gate:GRAD,CAM[,SIGMA]``: ``GRAD`` times ``CAM / max(CAM)``, Gaussian-blurred (SIGMA px, 4);
* ``pow:SRC,P``: the map to the power P (sharpen / flatten before the extractor).

Boxes (``--boxes``): ``per_class`` (one box per guessed class from its own map; GT-known from
the ground-truth class's map: the harness today), ``top1`` (the top-1 class's map gives one
box used for every guess and as the GT-known box), ``weightedK`` (one box from
``sum_k p_k map_k / max`` over the top-K classes, ``p`` the softmax of the mean logits).
MaxBoxAccV2 scores the map the GT-known box came from (the ground-truth class's map for
``per_class``, the class-agnostic map otherwise).

    python bench/explore_levers.py logits
    python bench/explore_levers.py compute cam_l0 cam_l0_s320
    python bench/explore_levers.py evaluate --map cam_l0 avg:cam_l0,cam_l0_s320 --boxes per_class top1 \\
        --seg segmentation.smooth_sigma=0 --grid segmentation.fg_quantile=0.8,0.9

Every table of docs/levers.md comes from these commands (cache: /work/runs/levers_cache).
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import torch
from scipy.ndimage import gaussian_filter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wsol_bench.boxes import Box
from wsol_bench.data.images import read_rgb
from wsol_bench.data.sources import DatasetSpec, EvaluationSet, load_evaluation_set
from wsol_bench.frames import resize_shorter_side, resized_shape
from wsol_bench.metrics.base import ImageResult, MapSample
from wsol_bench.metrics.ilsvrc import IlsvrcLocalisation
from wsol_bench.metrics.maxboxacc import MaxBoxAcc
from wsol_bench.metrics.scoring import run_evaluators
from wsol_bench.models import Classifier
from wsol_bench.saliency import CropSettings, SaliencyMethod, image_saliency
from wsol_bench.saliency.backprop import (
    backward_step,
    captured_outputs,
    check_scores,
    model_layout,
    upsample,
)
from wsol_bench.saliency.base import SaliencyStep
from wsol_bench.saliency.ensemble import combine_maps
from wsol_bench.segmentation import localise_image
from wsol_bench.segmentation.components import (
    TOO_FEW_SEEDS,
    fallback_localisation,
    mask_localisation,
    working_map,
)
from wsol_bench.segmentation.graphcut import GraphCut, min_cut
from wsol_bench.segmentation.mixtures import log_likelihoods

BASE_RESIZE = 256  # the frame every map is brought to, and the frame the extractor segments
TOP_K = 5


# ---------------------------------------------------------------------------------------------
# candidate methods (harness protocol); the winners move into wsol_bench/saliency/


@dataclass(frozen=True)
class LayerCamX(SaliencyMethod):
    """LayerCAM (Jiang et al. 2021) at the classifier's target layer: ``ReLU(sum_k ReLU(g_k) A_k)``."""

    name: ClassVar[str] = "x_layercam"

    def forward(self, classifier: Classifier, crops: torch.Tensor):
        return _layer_step(classifier, crops, lambda a, g: (g.clamp(min=0) * a).sum(dim=1).clamp(min=0))


@dataclass(frozen=True)
class GradCamPPX(SaliencyMethod):
    """Grad-CAM++ (Chattopadhyay et al. 2018), pytorch-grad-cam's weights (first-order gradients)."""

    name: ClassVar[str] = "x_gradcampp"

    def forward(self, classifier: Classifier, crops: torch.Tensor):
        def cam(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
            g2 = g * g
            aij = g2 / (2 * g2 + a.sum(dim=(2, 3), keepdim=True) * g2 * g + 1e-6)
            aij = torch.where(g != 0, aij, torch.zeros_like(aij))
            w = (g.clamp(min=0) * aij).sum(dim=(2, 3), keepdim=True)
            return (w * a).sum(dim=1).clamp(min=0)

        return _layer_step(classifier, crops, cam)


def _layer_step(classifier: Classifier, crops: torch.Tensor, combine):
    _, layer = classifier.feature_module(crops.shape[-1])
    size = tuple(crops.shape[2:])
    held: dict[str, torch.Tensor] = {}

    def run():
        x = model_layout(crops.detach()).requires_grad_(True)
        with captured_outputs([layer]) as found:
            logits = classifier.logits(x)
        held["A"] = found[layer]
        return logits, held["A"]

    return backward_step(classifier, run, lambda g: upsample(combine(held["A"].detach().float(), g.float()), size),
                         size)


@dataclass(frozen=True)
class UpscaledCamX(SaliencyMethod):
    """CAM of each crop enlarged ``scale`` times (bilinear), brought back to the crop (bilinear);
    the logits are those of the crops as given."""

    name: ClassVar[str] = "x_upscaled_cam"
    scale: float = 1.5

    def forward(self, classifier: Classifier, crops: torch.Tensor):
        from wsol_bench.saliency.cam import Cam

        base = Cam().forward(classifier, crops)
        side = round(crops.shape[-1] * self.scale)
        big = torch.nn.functional.interpolate(crops, size=(side, side), mode="bilinear", align_corners=False)
        return _ResizedStep(base.logits, Cam().forward(classifier, big.clamp(0, 1)), tuple(crops.shape[2:]))


@dataclass
class _ResizedStep(SaliencyStep):
    logits: torch.Tensor
    inner: SaliencyStep
    size: tuple[int, int]

    def maps(self, targets: torch.Tensor) -> torch.Tensor:
        m = self.inner.maps(targets)
        k, n = m.shape[:2]
        return upsample(m.reshape(k * n, *m.shape[2:]), self.size).reshape(k, n, *self.size).clamp(min=0)


@dataclass(frozen=True)
class FeatureMeanX(SaliencyMethod):
    """Class-agnostic: the channel mean of the target layer's (non-negative) feature maps, every class."""

    name: ClassVar[str] = "x_featmean"

    def forward(self, classifier: Classifier, crops: torch.Tensor):
        _, layer = classifier.feature_module(crops.shape[-1])
        with torch.no_grad(), captured_outputs([layer]) as found:
            logits = classifier.logits(model_layout(crops.detach()))
        check_scores(classifier, logits, crops.shape[0])
        return _SameMapStep(logits.float(), upsample(found[layer].float().mean(dim=1).clamp(min=0),
                                                     tuple(crops.shape[2:])))


@dataclass
class _SameMapStep(SaliencyStep):
    logits: torch.Tensor
    agnostic: torch.Tensor

    def maps(self, targets: torch.Tensor) -> torch.Tensor:
        out = self.agnostic[None].repeat(targets.shape[0], 1, 1, 1)
        out[(targets < 0).cpu()] = 0
        return out


@dataclass(frozen=True)
class RelativeGraphCutX(GraphCut):
    """Candidate extractor: GraphCut whose seeds are relative to the map's maximum (foreground
    ``>= fg_fraction * max``, background ``<= bg_fraction * max``) instead of quantiles. Used as
    ``--seg segmentation=custom segmentation.method=explore_levers:RelativeGraphCutX ...``."""

    fg_fraction: float = 0.5
    bg_fraction: float = 0.1

    def localise(self, prepared, saliency):
        sal, reason = working_map(saliency, prepared.input_size, prepared.work_size, self.smooth_sigma)
        if reason is not None:
            return fallback_localisation(prepared.input_size, reason)
        top = float(sal.max())
        fg, bg = sal >= self.fg_fraction * top, sal <= self.bg_fraction * top
        if min(int(fg.sum()), int(bg.sum())) < self.gmm_components:
            return fallback_localisation(prepared.input_size, TOO_FEW_SEEDS)
        fg_model = self._fit(prepared.colours, fg, 0)
        bg_model = self._fit(prepared.colours, bg, 1)
        ll_fg, ll_bg = log_likelihoods(prepared.features, [fg_model, bg_model])
        mask = min_cut(prepared, (ll_fg - ll_bg).reshape(prepared.work_size), (fg, bg) if self.hard_seeds else None)
        result = mask_localisation(mask, prepared.input_size, self.keep_components)
        result.seeds = (fg, bg)
        return result


# ---------------------------------------------------------------------------------------------
# sources


@dataclass(frozen=True)
class Source:
    model: str
    method: str  # cam | gradcam | gradient | layercam | gradcampp | featmean
    resize: int = 256
    crop: int = 224
    crops: int = 10
    layer: str | None = None  # target layer (None: the model's)


SOURCES: dict[str, Source] = {
    "cam_l0": Source("efficientnet_lite0", "cam"),
    "cam_l0_c2": Source("efficientnet_lite0", "cam", crops=2),
    "cam_l0_s288": Source("efficientnet_lite0", "cam", 288, 252),
    "cam_l0_s320": Source("efficientnet_lite0", "cam", 320, 280),
    "cam_l0_s384": Source("efficientnet_lite0", "cam", 384, 336),
    "cam_l0_s448": Source("efficientnet_lite0", "cam", 448, 392),
    "cam_l0_z320": Source("efficientnet_lite0", "cam", 320, 224),
    "cam_l0_z384": Source("efficientnet_lite0", "cam", 384, 224),
    "cam_l2": Source("efficientnet_lite2", "cam", 292, 260),
    "cam_l2_s384": Source("efficientnet_lite2", "cam", 384, 342),
    "cam_l2_s448": Source("efficientnet_lite2", "cam", 448, 399),
    "cam_l1": Source("efficientnet_lite1", "cam", 274, 240),
    "cam_l1_s384": Source("efficientnet_lite1", "cam", 384, 336),
    "cam_mnv2": Source("mobilenet_v2", "cam"),
    "layercam_l0_b4": Source("efficientnet_lite0", "layercam", layer="blocks.4"),
    "layercam_l0_b5": Source("efficientnet_lite0", "layercam", layer="blocks.5"),
    "layercam_l0_b6": Source("efficientnet_lite0", "layercam", layer="blocks.6"),
    "layercam_l0_bn2": Source("efficientnet_lite0", "layercam", layer="bn2"),
    "gradcampp_l0": Source("efficientnet_lite0", "gradcampp", layer="bn2"),
    "gradcampp_l0_b4": Source("efficientnet_lite0", "gradcampp", layer="blocks.4"),
    "featmean_l0": Source("efficientnet_lite0", "featmean"),
    "cam_l0_up125": Source("efficientnet_lite0", "upcam125"),
    "cam_l0_up150": Source("efficientnet_lite0", "upcam150"),
    "gradient_l0": Source("efficientnet_lite0", "gradient"),
    "gradient_l0_c2": Source("efficientnet_lite0", "gradient", crops=2),
}

#: harness-exact ensembles (:func:`wsol_bench.saliency.ensemble.ensemble_saliency`): name -> (ranker source,
#: localiser sources); maps stored in the ranker's resized frame (evaluate them with ``--frame`` = its resize)
ENSEMBLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "ens_l2_l0s384": ("cam_l2", ("cam_l0_s384", "cam_l2")),
}

#: classifier name -> the source whose mean logits rank its classes (the run's own crops)
CLASSIFIERS = {"l0": "cam_l0", "l2": "cam_l2", "mnv2": "cam_mnv2"}
#: more class rankings for ``evaluate --classes`` (their own top-5 are in their own maps only)
RANKINGS = {**CLASSIFIERS, "l0_s384": "cam_l0_s384", "l2_s384": "cam_l2_s384", "ens_l2_l0s384": "ens_l2_l0s384"}


def make_method(name: str) -> SaliencyMethod:
    from wsol_bench.saliency import saliency_method

    own = {"layercam": LayerCamX, "gradcampp": GradCamPPX, "featmean": FeatureMeanX}
    if name.startswith("upcam"):
        return UpscaledCamX(int(name[len("upcam"):]) / 100)
    return own[name]() if name in own else saliency_method(name)


def load_classifier(model: str, layer: str | None) -> Classifier:
    from wsol_bench.models import ModelSpec, build_classifier
    from wsol_bench.models.batchnorm import fold_batchnorm

    classifier = fold_batchnorm(build_classifier(ModelSpec(name=model, device="cpu")))
    return replace(classifier, target_layer=layer) if layer else classifier


# ---------------------------------------------------------------------------------------------
# data


def data_root(given: str | None) -> Path:
    for candidate in ([given] if given else ["../shared/ilsvrc_val_sample", "/work/shared/ilsvrc_val_sample"]):
        if Path(candidate, "images").is_dir():
            return Path(candidate)
    raise SystemExit("no ilsvrc_val_sample folder found; pass --data")


def load_data(root: Path) -> EvaluationSet:
    return load_evaluation_set(DatasetSpec(
        name="shared_sample", images=str(root / "images"), solution_csv=str(root / "LOC_val_solution.csv"),
        synset_mapping=str(root / "LOC_synset_mapping.txt"), devkit_meta=str(root / "devkit/meta.mat"),
        devkit_labels=str(root / "devkit/ILSVRC2012_validation_ground_truth.txt")))


def logits_file(cache: Path) -> Path:
    return cache / "logits.npz"


def top_classes(logits: np.ndarray, k: int = TOP_K) -> list[int]:
    """The harness's order (:func:`wsol_bench.saliency.select_classes`): by mean logit, ties by index."""
    return [int(c) for c in np.argsort(-logits.astype(np.float64), kind="stable")[:k]]


# ---------------------------------------------------------------------------------------------
# step 1: maps


def run_logits(args) -> None:
    """Mean logits of every image under each classifier's own crops (forward passes only)."""
    torch.set_num_threads(1)
    data = load_data(data_root(args.data))
    out = {}
    for short, src_name in CLASSIFIERS.items():
        src = SOURCES[src_name]
        classifier = load_classifier(src.model, src.layer)
        settings = CropSettings(resize=src.resize, crop=src.crop, crops=src.crops, top_k=1)
        rows = []
        start = time.perf_counter()
        for image_id in data.image_ids:
            resized = resize_shorter_side(read_rgb(data.image_paths[image_id]), src.resize)
            [res] = image_saliency(make_method("cam"), classifier, [resized], settings, num_classes=1000)
            rows.append(res.logits)
        out[short] = np.stack(rows)
        print(f"{short}: {(time.perf_counter() - start) / len(rows):.2f} s/image (cam, top-1 only)", flush=True)
    out["image_ids"] = np.array(data.image_ids)
    args.cache.mkdir(parents=True, exist_ok=True)
    np.savez(logits_file(args.cache), **out)


def needed_classes(cache: Path, data: EvaluationSet) -> dict[str, list[int]]:
    """Per image: the top-5 of every classifier and the ground truth (the extra classes of each source)."""
    saved = np.load(logits_file(cache))
    ids = list(saved["image_ids"])
    need = {}
    for i, image_id in enumerate(ids):
        classes: list[int] = []
        for short in CLASSIFIERS:
            classes += [c for c in top_classes(saved[short][i]) if c not in classes]
        gt = data.synsets.index(data.ground_truth[image_id].label)
        need[image_id] = classes + ([gt] if gt not in classes else [])
    return need


def run_compute(args) -> None:
    torch.set_num_threads(args.threads)
    data = load_data(data_root(args.data))
    need = needed_classes(args.cache, data)
    for name in args.sources:
        if name in ENSEMBLES:
            compute_ensemble(args, data, name)
            continue
        src = SOURCES[name]
        folder = args.cache / name
        folder.mkdir(parents=True, exist_ok=True)
        classifier = load_classifier(src.model, src.layer)
        method = make_method(src.method)
        settings = CropSettings(resize=src.resize, crop=src.crop, crops=src.crops, top_k=TOP_K)
        ids = data.image_ids[args.start : args.stop]
        done = 0
        for image_id in ids:
            path = folder / f"{image_id}.npz"
            if path.exists():
                continue
            rgb = read_rgb(data.image_paths[image_id])
            resized = resize_shorter_side(rgb, src.resize)
            start = time.perf_counter()
            [res] = image_saliency(method, classifier, [resized], settings, extra_classes=[need[image_id]],
                                   num_classes=1000)
            seconds = time.perf_counter() - start
            maps = res.maps
            if src.resize != BASE_RESIZE:  # stored in the base frame (what `evaluate` does with them anyway)
                h, w = resized_shape(*rgb.shape[:2], BASE_RESIZE)
                maps = np.stack([cv2.resize(m.astype(np.float64), (w, h), interpolation=cv2.INTER_LINEAR)
                                 for m in maps])
            np.savez(path.with_suffix(".tmp.npz"), logits=res.logits, classes=res.classes,
                     maps=maps.astype(np.float32), seconds=seconds, n_classes=len(res.classes))
            os.replace(path.with_suffix(".tmp.npz"), path)
            done += 1
        print(f"{name}: {done} images computed", flush=True)


def compute_ensemble(args, data: EvaluationSet, name: str) -> None:
    """An ensemble source through the harness's own function, maps in the ranker's frame."""
    from wsol_bench.saliency.ensemble import Localiser, ensemble_saliency

    def localiser(src_name: str) -> Localiser:
        src = SOURCES[src_name]
        return Localiser(make_method(src.method), load_classifier(src.model, src.layer),
                         CropSettings(resize=src.resize, crop=src.crop, crops=src.crops, top_k=TOP_K))

    ranker_name, members = ENSEMBLES[name]
    ranker = localiser(ranker_name)
    localisers = [ranker if m == ranker_name else localiser(m) for m in members]
    folder = args.cache / name
    folder.mkdir(parents=True, exist_ok=True)
    gts = {i: data.synsets.index(data.ground_truth[i].label) for i in data.image_ids}
    done = 0
    for image_id in data.image_ids[args.start : args.stop]:
        path = folder / f"{image_id}.npz"
        if path.exists():
            continue
        rgb = read_rgb(data.image_paths[image_id])
        start = time.perf_counter()
        [res] = ensemble_saliency(ranker, localisers, [rgb], [[gts[image_id]]], num_classes=1000)
        seconds = time.perf_counter() - start
        np.savez(path.with_suffix(".tmp.npz"), logits=res.logits, classes=res.classes, maps=res.maps,
                 seconds=seconds, n_classes=len(res.classes))
        os.replace(path.with_suffix(".tmp.npz"), path)
        done += 1
    print(f"{name}: {done} images computed", flush=True)


def _ranker_crops(name: str) -> tuple[int, int, int]:
    r = SOURCES[ENSEMBLES[name][0]]
    return r.resize, r.crop, r.crops


def run_costs(args) -> None:
    print("source | model | method | resize / crop / crops | images | s per image | s per image and class")
    for name in [*SOURCES, *ENSEMBLES]:
        src = SOURCES.get(name) or Source("+".join(ENSEMBLES[name][1]), "ensemble", *_ranker_crops(name))
        files = sorted((args.cache / name).glob("ILSVRC*.npz"))
        if not files:
            continue
        secs, per_class = [], []
        for f in files:
            z = np.load(f)
            secs.append(float(z["seconds"]))
            per_class.append(float(z["seconds"]) / int(z["n_classes"]))
        print(f"{name} | {src.model} | {src.method}{'@' + src.layer if src.layer else ''} | "
              f"{src.resize} / {src.crop} / {src.crops} | {len(files)} | {np.median(secs):.2f} | "
              f"{np.median(per_class):.3f}")


# ---------------------------------------------------------------------------------------------
# step 2: levers


@dataclass
class ImageMaps:
    """One image's loaded sources: ``map(source, class)`` in the base frame (float64)."""

    frame: tuple[int, int]
    found: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]  # source -> (classes, maps, logits)

    def map(self, source: str, cls: int) -> np.ndarray:
        classes, maps, _ = self.found[source]
        where = np.flatnonzero(classes == cls)
        if not len(where):
            raise KeyError(f"{source}: no map of class {cls}; recompute it after `logits`")
        m = maps[where[0]].astype(np.float64)
        if m.shape != self.frame:
            m = cv2.resize(m, (self.frame[1], self.frame[0]), interpolation=cv2.INTER_LINEAR)
        return m

    def logits(self, source: str) -> np.ndarray:
        return self.found[source][2]


def _norm(m: np.ndarray) -> np.ndarray:
    top = float(m.max())
    return m / top if top > 0 else m


def recipe_sources(spec: str) -> list[str]:
    kind, _, rest = spec.partition(":")
    if not rest:
        return [spec]
    parts = rest.split(",")
    if kind in ("avg", "sum"):
        return parts
    if kind == "gate":
        return parts[:2]
    if kind == "pow":
        return parts[:1]
    raise SystemExit(f"unknown map recipe {spec!r}")


def recipe_map(spec: str, im: ImageMaps, cls: int) -> np.ndarray:
    kind, _, rest = spec.partition(":")
    if not rest:
        return im.map(spec, cls)
    parts = rest.split(",")
    if kind == "avg":  # the harness's combination (ensemble.combine_maps), maps already in the frame
        return combine_maps([im.map(p, cls) for p in parts], im.frame).astype(np.float64)
    if kind == "sum":
        return np.mean([im.map(p, cls) for p in parts], axis=0)
    if kind == "gate":
        sigma = float(parts[2]) if len(parts) > 2 else 4.0
        return gaussian_filter(im.map(parts[0], cls) * _norm(im.map(parts[1], cls)), sigma)
    if kind == "pow":
        return _norm(im.map(parts[0], cls)) ** float(parts[1])
    raise SystemExit(f"unknown map recipe {spec!r}")


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x.astype(np.float64) - x.max())
    return e / e.sum()


def lever_maps(spec: str, boxes: str, im: ImageMaps, classes: list[int], probs: np.ndarray,
               gt: int) -> tuple[list[np.ndarray], np.ndarray]:
    """``(maps of the top-5 guesses, the GT-known map)``; class-agnostic modes repeat one map."""
    if boxes == "per_class":
        return [recipe_map(spec, im, c) for c in classes], recipe_map(spec, im, gt)
    if boxes == "top1":
        one = recipe_map(spec, im, classes[0])
    elif boxes.startswith("weighted"):
        k = int(boxes[len("weighted"):])
        p = probs[classes[:k]]
        one = sum(w * _norm(recipe_map(spec, im, c)) for w, c in zip(p / p.sum(), classes[:k]))
    else:
        raise SystemExit(f"unknown --boxes {boxes!r}")
    return [one] * len(classes), one


def _score_images(job) -> list[dict]:
    (items, specs, boxes_modes, extractors, classes_from, cache, synsets_wnid, ground_truth, gt_only,
     frame_resize) = job
    maxbox = MaxBoxAcc()
    out = []
    for image_id, path in items:
        rgb = read_rgb(path)
        resized = resize_shorter_side(rgb, frame_resize)
        frame = resized.shape[:2]
        sources = {s for spec in specs for s in recipe_sources(spec)} | {classes_from}
        found = {}
        for s in sources:
            z = np.load(cache / s / f"{image_id}.npz")
            found[s] = (z["classes"], z["maps"], z["logits"])
        im = ImageMaps(frame, found)
        logits = im.logits(classes_from)
        classes = top_classes(logits)
        probs = _softmax(logits)
        annotation = ground_truth[image_id]
        gt = synsets_wnid.index(annotation.label)
        row = {"image_id": image_id, "synsets": [synsets_wnid[c] for c in classes],
               "scores": [float(logits[c]) for c in classes], "levers": {}}
        for spec in specs:
            for mode in boxes_modes:
                maps, gt_map = lever_maps(spec, mode, im, classes, probs, gt)
                sample = MapSample(image_id, annotation, rgb.shape[:2], [annotation.label], gt_map[None])
                state = maxbox.image_state(sample)
                per_setting = []
                for ex in extractors:
                    if mode == "per_class" and gt_only:
                        [box] = localise_image(ex, resized, [gt_map], rgb.shape[:2]).boxes
                        per_setting.append((None, box))
                    elif mode == "per_class":
                        located = localise_image(ex, resized, [*maps, gt_map], rgb.shape[:2]).boxes
                        per_setting.append((located[:-1], located[-1]))
                    else:
                        [box] = localise_image(ex, resized, [gt_map], rgb.shape[:2]).boxes
                        per_setting.append(([box] * len(classes), box))
                row["levers"][(spec, mode)] = (state, per_setting)
        out.append(row)
    return out


def extractors_from(seg: list[str], grid: list[str]) -> tuple[list[str], list[tuple[str, ...]], list]:
    """The harness's box extractors (Hydra config, as a run builds them) for every grid setting."""
    from hydra import compose, initialize_config_dir

    from wsol_bench.config import register_configs
    from wsol_bench.tasks.factory import box_extractor_from

    register_configs()
    keys, values = (zip(*(g.split("=", 1) for g in grid)) if grid else ((), ()))
    combos = list(itertools.product(*(v.split(",") for v in values)))
    with initialize_config_dir(config_dir=str(Path(__file__).resolve().parent.parent / "conf"), version_base="1.3"):
        extractors = [box_extractor_from(compose(config_name="config", overrides=[
            *seg, *(f"{k}={v}" for k, v in zip(keys, c))])) for c in combos]
    return list(keys), combos, extractors


def run_evaluate(args) -> None:
    torch.set_num_threads(1)
    data = load_data(data_root(args.data))
    keys, combos, extractors = extractors_from(args.seg, args.grid)
    ids = data.image_ids
    items = [(i, str(data.image_paths[i])) for i in ids]
    wnids = [data.synsets.wnid(c) for c in range(len(data.synsets))]
    start = time.perf_counter()
    chunks = [items[i :: args.processes] for i in range(args.processes)]
    jobs = [(c, args.map, args.boxes, extractors, RANKINGS[args.classes], args.cache, wnids,
             data.ground_truth, args.gt_only, args.frame) for c in chunks]
    if args.processes > 1:
        with ProcessPoolExecutor(args.processes) as pool:
            parts = list(pool.map(_score_images, jobs))
    else:
        parts = [_score_images(j) for j in jobs]
    rows = {r["image_id"]: r for part in parts for r in part}
    elapsed = time.perf_counter() - start
    halves = [(f"1-{args.split}", ids[: args.split]), (f"{args.split + 1}-{len(ids)}", ids[args.split :])]
    seg = " ".join(args.seg) or "(graphcut defaults)"
    print(f"{len(ids)} images, classes from {args.classes}, extractor {seg}, frame {args.frame}, {elapsed:.0f} s")
    head = ["map", "boxes", *keys, "images", "top-1 loc.", "top-5 loc.", "GT-known loc.", "MaxBoxAccV2",
            "MaxBoxAcc IoU 50 (all boxes)"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for spec in args.map:
        for mode in args.boxes:
            for j, combo in enumerate(combos):
                for label, half in halves:
                    results = []
                    for image_id in half:
                        row = rows[image_id]
                        state, per_setting = row["levers"][(spec, mode)]
                        boxes, gt_box = per_setting[j]
                        if boxes is None:  # --gt-only: no guesses' boxes (top-k errors are not shown)
                            boxes = [Box(0, 0, 0, 0)] * len(row["synsets"])
                        results.append(ImageResult(image_id, synsets=row["synsets"], scores=row["scores"],
                                                   boxes=list(boxes), gt_known_box=gt_box,
                                                   states={"maxboxacc": state} if state else {}))
                    truth = {i: data.ground_truth[i] for i in half}
                    ev = run_evaluators([IlsvrcLocalisation(), MaxBoxAcc()], truth, results)
                    if ev.failed:
                        raise SystemExit(f"evaluators failed: {ev.failed}")
                    f = ev.figures
                    loc, ci, gk, gci = f["loc_error_at_k"], f["loc_error_ci95"], f["gt_known_loc_error"], \
                        f["gt_known_loc_error_ci95"]
                    top1 = "-" if args.gt_only and mode == "per_class" else f"{loc[0]:.3f}"
                    top5 = "-" if args.gt_only and mode == "per_class" else \
                        f"{loc[4]:.3f} [{ci[4][0]:.3f}, {ci[4][1]:.3f}]"
                    cells = [spec, mode, *combo, label, top1, top5,
                             f"{gk:.3f} [{gci[0]:.3f}, {gci[1]:.3f}]", f"{f['maxboxacc_v2']:.1f}",
                             f"{f['maxboxacc_v2_at_iou']['50']:.0f}"]
                    print("| " + " | ".join(cells) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get("LEVERS_CACHE", "/work/runs/levers_cache")))
    parser.add_argument("--data", default=None, help="the ilsvrc_val_sample folder (default: ../shared/...)")
    sub = parser.add_subparsers(dest="step", required=True)
    sub.add_parser("logits")
    p = sub.add_parser("compute")
    p.add_argument("sources", nargs="+", choices=sorted([*SOURCES, *ENSEMBLES]))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--stop", type=int, default=None)
    sub.add_parser("costs")
    p = sub.add_parser("evaluate")
    p.add_argument("--map", nargs="+", default=["cam_l0"], help="map recipes (module docstring)")
    p.add_argument("--boxes", nargs="+", default=["per_class"], help="per_class | top1 | weightedK")
    p.add_argument("--classes", default="l0", choices=sorted(RANKINGS), help="whose top-5 classes")
    p.add_argument("--seg", nargs="*", default=[], help="config overrides of the extractor (segmentation=...)")
    p.add_argument("--grid", nargs="*", default=[], help="key=v1,v2 ... extractor settings")
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--split", type=int, default=100)
    p.add_argument("--frame", type=int, default=BASE_RESIZE,
                   help="shorter side of the frame the boxes are made in (maps are brought to it)")
    p.add_argument("--gt-only", action="store_true", help="per_class: only the ground-truth class's box (fast)")
    args = parser.parse_args()
    {"logits": run_logits, "compute": run_compute, "costs": run_costs, "evaluate": run_evaluate}[args.step](args)


if __name__ == "__main__":
    main()
