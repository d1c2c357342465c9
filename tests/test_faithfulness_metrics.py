"""The faithfulness evaluators (deletion, insertion, ROAD) through the metric protocol: against
hand computations on a toy model and against the kernels / pytorch-grad-cam on the same crop,
their per-image states, edge cases, parameters, intervals and report sections."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
from scipy import stats

from wsol_bench.boxes import Box, ImageAnnotation
from wsol_bench.metrics import METRICS, ImageResult, MapSample
from wsol_bench.metrics.deletion import Deletion
from wsol_bench.metrics.faithfulness import centre_crop, image_seed, mean_interval
from wsol_bench.metrics.insertion import Insertion
from wsol_bench.metrics.road import road
from wsol_bench.metrics.road_metric import Road
from wsol_bench.metrics.scoring import metric_states, run_evaluators
from wsol_bench.metrics.similarity import minmax
from wsol_bench.models import Classifier
from wsol_bench.reports.sections import section_of

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
LABEL, OTHER = "n01440764", "n01443537"


class RedSum(torch.nn.Module):
    """Two classes: logit 0 = sum of ``weight * x[0]`` (the normalised red channel), logit 1 = 0."""

    def __init__(self, weight: np.ndarray) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.from_numpy(weight.astype(np.float32)), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = (x[:, 0] * self.weight).flatten(1).sum(1)
        return torch.stack([score, torch.zeros_like(score)], dim=1)


class Constant(torch.nn.Module):
    """Logits that ignore the input: every class equally likely."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.classes = classes
        self.dummy = torch.nn.Parameter(torch.zeros(1), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(x.shape[0], self.classes) + 0 * self.dummy


def toy_classifier(module: torch.nn.Module) -> Classifier:
    return Classifier(module.eval(), MEAN, STD, "toy", "toy:0")


def annotation(image_id: str, h: int = 11, w: int = 13) -> ImageAnnotation:
    return ImageAnnotation(image_id, w, h, (Box(0, 0, w - 1, h - 1, LABEL),))


def sample(image: np.ndarray, saliency: np.ndarray, classifier: Classifier | None, image_id: str = "img",
           target: int = 0) -> MapSample:
    h, w = saliency.shape
    truth = annotation(image_id, h, w)
    return MapSample(image_id, truth, (h, w), [OTHER, LABEL], np.stack([np.zeros_like(saliency), saliency]),
                     image, classifier, classes=[1 - target, target])


@pytest.fixture
def toy():
    """An 11 x 13 frame (crop 8: rows 1..8, columns 2..9, offsets rounded down), distinct map
    values, a toy model."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (11, 13, 3), dtype=np.uint8)
    saliency = rng.permutation(143).reshape(11, 13).astype(np.float32)
    weight = rng.standard_normal((8, 8)) / 20
    return image, saliency, weight


def hand_curve(image: np.ndarray, saliency: np.ndarray, weight: np.ndarray, mode: str, baseline_red: np.ndarray,
               n_steps: int) -> np.ndarray:
    """The RISE curve of :class:`RedSum` by hand: float64 numpy, no code of the harness."""
    crop_image = image[1:9, 2:10, 0].astype(np.float64) / 255  # the 8 x 8 centre crop's red channel
    crop_map = saliency[1:9, 2:10].ravel()
    order = np.argsort(-crop_map)  # distinct values: no ties
    red = (crop_image - 0.5) / 0.25
    base = (baseline_red - 0.5) / 0.25
    step = math.ceil(64 / n_steps)
    probs = []
    for i in range(n_steps + 1):
        changed = np.zeros(64, bool)
        changed[order[:min(step * i, 64)]] = True
        changed = changed.reshape(8, 8)
        if mode == "deletion":
            values = np.where(changed, base, red)
        else:
            values = np.where(changed, red, base)
        probs.append(1 / (1 + np.exp(-(values * weight).sum())))
    return np.asarray(probs)


def trapezoid(curve: np.ndarray) -> float:
    return float(np.trapezoid(curve, np.linspace(0, 1, curve.size)))


@pytest.mark.parametrize("mode, baseline, baseline_red", [
    ("deletion", None, 0.5),  # RISE's deletion: the classifier's mean colour
    ("deletion", "black", 0.0),
    ("insertion", "black", 0.0),
    ("insertion", "mean", 0.5),
])
def test_curve_through_the_evaluator_equals_a_hand_computation(toy, mode, baseline, baseline_red):
    image, saliency, weight = toy
    ev = METRICS.create(mode, {"n_steps": 5, "crop": 8, "baseline": baseline, "batch_size": 2}, f"evaluation.{mode}")
    state = ev.image_state(sample(image, saliency, toy_classifier(RedSum(weight))))
    expected = hand_curve(image, saliency, weight, mode, np.full((8, 8), baseline_red), 5)
    assert state[f"{mode}_auc"] == pytest.approx(trapezoid(expected), abs=1e-6)
    p_image = expected[0] if mode == "deletion" else expected[-1]
    p_baseline = expected[-1] if mode == "deletion" else expected[0]
    assert state["p_image"] == pytest.approx(p_image, abs=1e-6)
    assert state["p_baseline"] == pytest.approx(p_baseline, abs=1e-6)


def test_insertion_blurs_by_default_and_the_map_orders_the_pixels(toy):
    image, saliency, weight = toy
    classifier = toy_classifier(RedSum(weight))
    ev = Insertion(n_steps=5, crop=8)
    assert ev.substrate == "blur" and Deletion().substrate == "mean"
    state = ev.image_state(sample(image, saliency, classifier))
    # the blurred red channel: RISE's gkern(11, 5) with zero padding of the normalised image
    from scipy.ndimage import convolve, gaussian_filter

    impulse = np.zeros((11, 11))
    impulse[5, 5] = 1
    kernel = gaussian_filter(impulse, 5)
    red = (image[1:9, 2:10, 0].astype(np.float64) / 255 - 0.5) / 0.25
    blurred = convolve(red, kernel, mode="constant") * 0.25 + 0.5
    expected = hand_curve(image, saliency, weight, "insertion", blurred, 5)
    assert state["insertion_auc"] == pytest.approx(trapezoid(expected), abs=1e-5)
    reversed_map = ev.image_state(sample(image, saliency.max() - saliency, classifier))
    assert reversed_map["insertion_auc"] != pytest.approx(state["insertion_auc"], abs=1e-4)


def test_road_through_the_evaluator_equals_the_kernel_on_the_same_crop(toy):
    image, saliency, weight = toy
    classifier = toy_classifier(RedSum(weight))
    ev = Road(crop=8, percentiles=(20, 50, 80), seed=3)
    state = ev.image_state(sample(image, saliency, classifier, image_id="ILSVRC2012_val_00000007"))
    crop_image, crop_map = centre_crop(image, saliency, 8)
    x = torch.from_numpy(crop_image.copy()).permute(2, 0, 1).float() / 255
    result = road(classifier.module, classifier.normalise(x[None])[0], minmax(crop_map).astype(np.float32), 0,
                  (20, 50, 80), generator=image_seed(3, "ILSVRC2012_val_00000007"))
    assert state == {"road_morf": result.morf_mean, "road_lerf": result.lerf_mean, "road_combined": result.combined}
    other = ev.image_state(sample(image, saliency, classifier, image_id="another"))
    assert other["road_morf"] != state["road_morf"]  # another image id, other noise


def test_road_through_the_evaluator_equals_grad_cams_road_combined():
    try:
        from pytorch_grad_cam.metrics.road import ROADCombined, ROADLeastRelevantFirstAverage
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget
    except ImportError as err:
        pytest.skip(f"pytorch-grad-cam is not installed ({err}): pip install --no-deps grad-cam==1.5.7 ttach")
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (40, 44, 3), dtype=np.uint8)
    saliency = rng.random((40, 44)).astype(np.float32) * 1e-3  # an unscaled map: the evaluator min-max scales it
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                 torch.nn.Flatten(), torch.nn.Linear(6, 3)).eval()
    classifier = toy_classifier(module)
    s = sample(image, saliency, classifier, image_id="x", target=2)
    s.classes[:] = [0, 2]
    state = Road(crop=32, seed=5).image_state(s)
    crop_image, crop_map = centre_crop(image, saliency, 32)
    x = classifier.normalise(torch.from_numpy(crop_image.copy()).permute(2, 0, 1).float()[None] / 255)
    scaled = minmax(crop_map).astype(np.float32)[None]
    targets = [ClassifierOutputSoftmaxTarget(2)]
    expected = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(image_seed(5, "x"))
        expected["road_combined"] = float(ROADCombined()(x, scaled, targets, module)[0])
        torch.manual_seed(image_seed(5, "x"))  # ROADCombined draws LeRF's noise first, then MoRF's
        expected["road_lerf"] = float(ROADLeastRelevantFirstAverage()(x, scaled, targets, module)[0])
    for key, value in expected.items():
        assert state[key] == pytest.approx(value, abs=1e-6), key
    assert state["road_morf"] == pytest.approx(state["road_lerf"] - 2 * state["road_combined"], abs=1e-6)


def run(evaluator, results, ids):
    truth = {i: annotation(i) for i in ids}
    return run_evaluators([evaluator], truth, results)


def test_states_are_json_and_figures_are_the_mean_with_a_t_interval(toy):
    image, saliency, weight = toy
    classifier = toy_classifier(RedSum(weight))
    ev = Deletion(n_steps=4, crop=8)
    ids = [f"im{k}" for k in range(5)]
    results = []
    for k, image_id in enumerate(ids):
        noisy = np.roll(saliency, k, axis=1)
        states, failures = metric_states([ev], sample(image, noisy, classifier, image_id))
        assert not failures
        states = json.loads(json.dumps(states))  # what a record on disk gives back
        results.append(ImageResult(image_id, states=states))
    results.append(ImageResult("failed", status="failed"))
    evaluation = run(ev, results, [*ids, "failed"])
    values = np.array([r.states["deletion"]["deletion_auc"] for r in results[:5]])
    f = evaluation.figures
    assert f["deletion_auc"] == pytest.approx(values.mean())
    lo, hi = stats.t.interval(0.95, 4, loc=values.mean(), scale=stats.sem(values))
    assert f["deletion_auc_ci95"] == pytest.approx([lo, hi])
    assert f["deletion_auc_n_images"] == 5 and f["deletion_auc_n_without_state"] == 1
    assert f["deletion_baseline"] == "mean" and f["deletion_n_steps"] == 4
    column = evaluation.per_image.set_index("image_id")["deletion_auc"]
    assert column[ids].tolist() == pytest.approx(values.tolist()) and np.isnan(column["failed"])
    # order and chunking do not change a figure: sharded and resumed runs merge alike
    again = Deletion(n_steps=4, crop=8)
    again.start({i: annotation(i) for i in [*ids, "failed"]})
    again.accumulate(results[3:][::-1])
    again.accumulate(results[:3])
    assert again.compute() == evaluation.by_metric["deletion"]


def test_nan_map_fails_that_metric_only_and_is_counted(toy):
    image, saliency, weight = toy
    classifier = toy_classifier(RedSum(weight))
    bad = saliency.copy()
    bad[4, 5] = np.nan
    evs = [Deletion(crop=8, n_steps=4), Insertion(crop=8, n_steps=4), Road(crop=8, percentiles=(50,))]
    states, failures = metric_states(evs, sample(image, bad, classifier, "nan"))
    assert set(failures) == {"deletion", "insertion", "road"} and not states
    assert all("NaN" in reason for reason in failures.values())
    good_states, _ = metric_states(evs, sample(image, saliency, classifier, "ok"))
    results = [ImageResult("nan", states=states, metric_failures=failures), ImageResult("ok", states=good_states)]
    truth = {i: annotation(i) for i in ("nan", "ok")}
    evaluation = run_evaluators(evs, truth, results)
    assert evaluation.image_failures == {"deletion": 1, "insertion": 1, "road": 1}
    assert evaluation.figures["deletion_auc_n_without_state"] == 1 and evaluation.figures["road_n_images"] == 1
    assert evaluation.figures["deletion_auc_ci95"] is None  # one image: no interval


def test_constant_map_and_constant_scores_are_defined(toy):
    image, saliency, weight = toy
    flat = np.full_like(saliency, 0.3)
    deletion = Deletion(crop=8, n_steps=5, baseline="black")
    state = deletion.image_state(sample(image, flat, toy_classifier(RedSum(weight))))
    by_index = hand_curve(image, np.arange(143, 0, -1, dtype=np.float32).reshape(11, 13), weight, "deletion",
                          np.zeros((8, 8)), 5)  # a constant map deletes in row-major index order
    assert state["deletion_auc"] == pytest.approx(trapezoid(by_index), abs=1e-6)
    road_state = Road(crop=8).image_state(sample(image, flat, toy_classifier(RedSum(weight))))
    assert all(math.isfinite(v) for v in road_state.values())
    constant = toy_classifier(Constant(4))
    for ev in (Deletion(crop=8, n_steps=5), Insertion(crop=8, n_steps=5)):
        s = ev.image_state(sample(image, saliency, constant))
        assert s[f"{ev.name}_auc"] == pytest.approx(0.25) and s["p_image"] == pytest.approx(0.25)
    assert Road(crop=8).image_state(sample(image, saliency, constant)) == {"road_morf": 0.0, "road_lerf": 0.0,
                                                                           "road_combined": 0.0}


def test_no_map_of_the_class_gives_no_state_and_small_frames_fail(toy):
    image, saliency, weight = toy
    s = sample(image, saliency, toy_classifier(RedSum(weight)))
    s.synsets[1] = "n99999999"  # the ground-truth class has no map
    assert Deletion(crop=8).image_state(s) is None and Road(crop=8).image_state(s) is None
    with pytest.raises(ValueError, match="smaller than the 224x224 crop"):
        Deletion().image_state(sample(image, saliency, toy_classifier(RedSum(weight))))
    with pytest.raises(ValueError, match="needs the image and the classifier"):
        Road(crop=8).image_state(sample(image, saliency, None))


@pytest.mark.parametrize("name, params, key", [
    ("deletion", {"n_steps": 0}, "evaluation.deletion.n_steps=0"),
    ("deletion", {"baseline": "grey"}, "evaluation.deletion.baseline='grey'"),
    ("insertion", {"batch_size": 0}, "evaluation.insertion.batch_size=0"),
    ("insertion", {"crop": 4}, "evaluation.insertion.crop=4"),
    ("insertion", {"steps": 5}, "evaluation.insertion.steps: not a parameter"),
    ("road", {"percentiles": [0, 50]}, "evaluation.road.percentiles="),
    ("road", {"percentiles": [50, 50]}, "evaluation.road.percentiles="),
    ("road", {"noise": -0.1}, "evaluation.road.noise=-0.1"),
    ("road", {"seed": -1}, "evaluation.road.seed=-1"),
])
def test_bad_parameters_name_the_key(name, params, key):
    with pytest.raises(ValueError) as err:
        METRICS.create(name, params, f"evaluation.{name}")
    assert str(err.value).startswith(key)


def test_default_config_sections_build_and_the_metrics_stay_off():
    import yaml

    from tests.helpers import CONF_DIR

    cfg = yaml.safe_load((CONF_DIR / "evaluation" / "default.yaml").read_text())
    assert not {"deletion", "insertion", "road"} & set(cfg["metrics"])  # off by default (docs/faithfulness.md)
    for name in ("deletion", "insertion", "road"):
        ev = METRICS.create(name, cfg[name], f"evaluation.{name}")
        assert ev.needs_maps and ev.needs_model and ev == type(ev)()  # the file spells out the defaults


def test_mean_interval_is_students():
    values = [0.1, 0.4, 0.35, 0.2]
    mean, (lo, hi) = mean_interval(values)
    assert mean == pytest.approx(0.2625)
    assert (lo, hi) == pytest.approx(stats.t.interval(0.95, 3, loc=np.mean(values), scale=stats.sem(values)))
    assert mean_interval([]) == (None, None) and mean_interval([0.3]) == (0.3, None)


def test_sections_show_the_figures_and_the_sweep_columns(toy):
    image, saliency, weight = toy
    classifier = toy_classifier(RedSum(weight))
    evs = [Deletion(crop=8, n_steps=4), Insertion(crop=8, n_steps=4), Road(crop=8, percentiles=(30, 70))]
    ids = ["a", "b", "c"]
    results = []
    for k, image_id in enumerate(ids):
        states, _ = metric_states(evs, sample(image, np.roll(saliency, k, axis=0), classifier, image_id))
        results.append(ImageResult(image_id, states=states))
    truth = {i: annotation(i) for i in ids}
    evaluation = run_evaluators(evs, truth, results)
    for ev in evs:
        figures = evaluation.by_metric[ev.name]
        text = "\n".join(section_of(ev.name).lines(ev, figures))
        columns = section_of(ev.name).columns(ev, figures)
        key = "road_combined" if ev.name == "road" else f"{ev.name}_auc"
        assert f"{figures[key]:.4f}" in text and "Student-t" in text
        assert columns[key] == figures[key] and columns[f"{key}_ci95"] == figures[f"{key}_ci95"]
    assert set(evaluation.per_image.columns) == {"image_id", "deletion_auc", "insertion_auc", "road_morf", "road_lerf",
                                                 "road_combined"}
