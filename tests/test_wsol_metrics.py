"""MaxBoxAcc / MaxBoxAccV2 (clovaai/wsolevaluation) and the pointing game (TorchRay): every
convention pinned on hand-made maps, streaming, the score-map export, and cross-checks
against literal test oracles of the two reference implementations."""

from __future__ import annotations

import json
import random
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from wsol_bench.boxes import Box, ImageAnnotation
from wsol_bench.data.scoremaps import (
    read_metadata,
    read_scoremap,
    write_metadata,
    write_scoremap,
)
from wsol_bench.frames import wsol_scoremap
from wsol_bench.metrics import METRICS, ImageResult, MapSample
from wsol_bench.metrics.maxboxacc import (
    MaxBoxAcc,
    boxes_at_thresholds,
    cam_thresholds,
    decode_bits,
    encode_bits,
    multiple_iou,
    resize_gt_box,
    threshold_hits,
)
from wsol_bench.metrics.pointing_game import (
    PointingGame,
    point_hits,
    pointing_hit,
    pointing_point,
    torchray_resize,
)
from wsol_bench.metrics.scoring import score_maps
from wsol_bench.reports.sections import section_of

REPO = Path(__file__).resolve().parent.parent
CLS = "n01440764"  # class 0 in sorted-WNID order
OTHER = "n01443537"  # class 1
THR = cam_thresholds(0.01)


def u8map(levels: np.ndarray) -> np.ndarray:
    """A [0, 1] score map whose ``(map * 255).astype(uint8)`` is exactly ``levels``."""
    levels = np.asarray(levels, dtype=np.float64)
    return np.where(levels >= 255, 1.0, (levels + 0.5) / 255)


def annotation(image_id: str, size: tuple[int, int], *boxes: tuple[int, int, int, int], synset: str = CLS):
    h, w = size
    return ImageAnnotation(image_id, w, h, tuple(Box(*b, synset) for b in boxes))


def hits_at(scoremap, gt, ious=(30, 50, 70)):
    return threshold_hits(scoremap, np.asarray(gt), THR, ious)


# --------------------------------------------------------------------------------------------
# wsolevaluation conventions, one by one
# --------------------------------------------------------------------------------------------

def test_thresholds_are_np_arange_values():
    assert len(THR) == 100 and THR[0] == 0.0 and THR[-1] == pytest.approx(0.99)
    assert int(THR[29] * 255) == 73  # 73.95 truncated
    assert int(THR[29] * np.uint8(100)) == 28  # 28.999999999999996: float rounding, then truncation


def test_threshold_is_strictly_above_int_t_max():
    levels = np.zeros((224, 224))
    levels[0, 0] = 255  # the peak (a 1-pixel contour, area 0)
    levels[100:120, 100:140] = 73  # exactly int(0.29 * 255)
    ((boxes28, _),) = [boxes_at_thresholds(u8map(levels), [THR[28]])[0]]  # thresh 71
    ((boxes29, _),) = [boxes_at_thresholds(u8map(levels), [THR[29]])[0]]  # thresh 73
    assert [100, 100, 140, 120] in boxes28.tolist()
    assert [100, 100, 140, 120] not in boxes29.tolist()  # 73 is not > 73
    assert boxes29.tolist() == [[0, 0, 1, 1]]  # only the peak pixel is left


def test_uint8_truncation_of_map_times_255():
    levels = np.zeros((224, 224))
    levels[0, 0] = 255
    scoremap = u8map(levels)
    scoremap[100:120, 100:140] = 73.99 / 255  # -> 73 (truncated; rounding would give 74)
    boxes, _ = boxes_at_thresholds(scoremap, [THR[29]])[0]
    assert [100, 100, 140, 120] not in boxes.tolist()
    scoremap[100:120, 100:140] = 74.0 / 255  # -> 74 > 73
    boxes, _ = boxes_at_thresholds(scoremap, [THR[29]])[0]
    assert [100, 100, 140, 120] in boxes.tolist()


def test_threshold_uses_the_maps_own_uint8_maximum_with_float_rounding():
    """A map whose peak is 100/255 (a foreign map): int(0.29 * 100) = 28, so 29 is foreground."""
    levels = np.zeros((224, 224))
    levels[0, 0] = 100
    levels[50:60, 50:70] = 29
    boxes, _ = boxes_at_thresholds(u8map(levels), [THR[29]])[0]
    assert [50, 50, 70, 60] in boxes.tolist()
    boxes, _ = boxes_at_thresholds(u8map(levels), [THR[30]])[0]  # int(30.000000000000004) = 30
    assert [50, 50, 70, 60] not in boxes.tolist()


def test_box_is_boundingrect_with_exclusive_end_clipped_to_the_frame():
    levels = np.zeros((224, 224))
    levels[10:20, 30:45] = 255  # rows 10..19, cols 30..44
    levels[200:224, 214:224] = 200  # touches the bottom-right corner
    boxes, largest = boxes_at_thresholds(u8map(levels), [0.0])[0]
    assert sorted(boxes.tolist()) == [[30, 10, 45, 20], [214, 200, 223, 223]]
    assert boxes[largest].tolist() == [214, 200, 223, 223]  # area 24 x 10 > 15 x 10


def test_iou_is_plus_one_inclusive_on_exclusive_end_boxes():
    assert multiple_iou(np.array([[10, 10, 20, 20]]), np.array([[10, 10, 19, 19]]))[0, 0] == pytest.approx(100 / 121)
    assert multiple_iou(np.array([[0, 0, 0, 0]]), np.array([[5, 5, 9, 9]]))[0, 0] == 0.0
    # a one-pixel region equal to its one-pixel ground truth scores 1/4, a miss at IoU 0.3
    levels = np.zeros((224, 224))
    levels[50, 50] = 255
    largest, every = hits_at(u8map(levels), [[50, 50, 50, 50]])
    assert not largest.any() and not every[30].any()


def test_iou_thresholds_are_inclusive_percent_over_100():
    levels = np.zeros((224, 224))
    levels[0:9, 0:9] = 255  # box (0, 0, 9, 9): 10 x 10 = 100 with +1
    # GT (0, 0, 4, 9): 5 x 10 = 50, inside: IoU = 50 / 100 = 0.5 exactly -> a hit at 50
    largest, every = hits_at(u8map(levels), [[0, 0, 4, 9]])
    assert largest.all() and every[50].all() and not every[70].any()


def test_gt_boxes_scaled_with_truncation():
    assert resize_gt_box(Box(3, 3, 499, 374), (375, 500)) == (1, 1, 223, 223)  # 1.344, 1.792, 223.55, 223.40
    assert resize_gt_box(Box(0, 0, 249, 187), (375, 500)) == (0, 0, 111, 111)  # 111.55 and 111.70 truncated
    assert resize_gt_box(Box(4, 4, 10, 10), (375, 500)) == (1, 2, 4, 5)  # 1.792, 2.389, 4.48, 5.97
    assert resize_gt_box(Box(10, 0, 10, 0), (224, 224)) == (10, 0, 10, 0)


def test_largest_contour_versus_all_contours():
    levels = np.zeros((224, 224))
    levels[0:100, 0:100] = 255  # the largest blob, no ground truth there
    levels[150:170, 150:170] = 255  # a small blob exactly on the ground truth
    gt = [[150, 150, 170, 170]]
    largest, every = hits_at(u8map(levels), gt)
    assert not largest.any()  # MaxBoxAcc only sees the largest contour
    assert every[70].all()  # MaxBoxAccV2 sees every contour


def test_largest_is_by_contour_area_not_box_area():
    levels = np.zeros((224, 224))
    levels[np.arange(150), np.arange(150)] = 255  # a diagonal line: a 151 x 151 box, contour area ~0
    levels[180:200, 180:200] = 255  # a 20 x 20 square: contour area 19 x 19
    boxes, largest = boxes_at_thresholds(u8map(levels), [0.5])[0]
    assert boxes[largest].tolist() == [180, 180, 200, 200]
    largest_hits, _ = hits_at(u8map(levels), [[180, 180, 200, 200]])
    assert largest_hits.all()


def test_largest_of_equal_areas_is_the_first_contour():
    """Python's max() keeps the first of equal keys: the first in OpenCV's contour order."""
    levels = np.zeros((224, 224))
    levels[20:40, 20:40] = 255
    levels[150:170, 100:120] = 255
    image = (u8map(levels) * 255).astype(np.uint8)
    contours = cv2.findContours(cv2.threshold(image, 127, 255, cv2.THRESH_BINARY)[1], cv2.RETR_TREE,
                                cv2.CHAIN_APPROX_SIMPLE)[0]
    assert len(contours) == 2 and cv2.contourArea(contours[0]) == cv2.contourArea(contours[1])
    x, y, w, h = cv2.boundingRect(contours[0])
    boxes, largest = boxes_at_thresholds(u8map(levels), [0.5])[0]
    assert boxes[largest].tolist() == [x, y, x + w, y + h]


def test_holes_give_contours_too_retr_tree():
    levels = np.zeros((224, 224))
    levels[20:120, 20:120] = 255
    levels[60:80, 60:80] = 0  # a hole: RETR_TREE lists its contour as well
    boxes, _ = boxes_at_thresholds(u8map(levels), [0.5])[0]
    assert len(boxes) == 2
    assert [20, 20, 120, 120] in boxes.tolist()


def test_multiple_ground_truth_boxes_any_one_counts():
    levels = np.zeros((224, 224))
    levels[100:140, 30:90] = 255
    largest, _ = hits_at(u8map(levels), [[0, 0, 10, 10], [30, 100, 90, 140]])
    assert largest.all()
    largest, _ = hits_at(u8map(levels), [[0, 0, 10, 10]])
    assert not largest.any()


def test_constant_is_judged_after_the_cubic_resize():
    """A constant 0.7 map gains rounding noise (4e-16) in the cubic resize, which the min-max
    normalisation stretches to [0, 1], as wsolevaluation's CAMComputer does; at 224 x 224
    (no resize) or for constants the cubic weights keep exact (0.5, 0), the map is zeroed."""
    noisy = wsol_scoremap(np.full((256, 300), 0.7))
    assert noisy.min() == 0.0 and noisy.max() == 1.0
    assert not wsol_scoremap(np.full((224, 224), 0.7)).any()
    assert not wsol_scoremap(np.full((256, 300), 0.5)).any()
    np.testing.assert_array_equal(cv2.resize(noisy, (224, 224), interpolation=cv2.INTER_CUBIC), noisy)


@pytest.mark.parametrize("raw", [np.full((256, 300), 0.5), np.zeros((256, 300)), np.full((224, 224), 0.7),
                                 np.where(np.eye(256, 300) > 0, np.nan, 1.0)])
def test_constant_zero_and_nan_maps_become_zero_and_score_the_corner_box(raw):
    scoremap = wsol_scoremap(raw)
    assert scoremap.shape == (224, 224) and scoremap.dtype == np.float64 and not scoremap.any()
    for boxes, _ in boxes_at_thresholds(scoremap, THR):
        assert boxes.tolist() == [[0, 0, 0, 0]]  # no contour
    # the corner box [0, 0, 0, 0] still has IoU 1/2 with a 1 x 2 ground truth on the corner
    largest, every = hits_at(scoremap, [[0, 0, 0, 1]])
    assert largest.all() and every[50].all() and not every[70].any()
    largest, every = hits_at(scoremap, [[100, 100, 150, 150]])
    assert not largest.any() and not every[30].any()


def test_scoremap_is_cubic_resize_then_min_max():
    raw = np.random.default_rng(0).random((256, 341)).astype(np.float32)
    expected = cv2.resize(raw.astype(np.float64), (224, 224), interpolation=cv2.INTER_CUBIC)
    expected = (expected - expected.min()) / (expected - expected.min()).max()
    got = wsol_scoremap(raw)
    np.testing.assert_array_equal(got, expected)
    assert got.min() == 0.0 and got.max() == 1.0


def test_bits_round_trip():
    bits = np.random.default_rng(1).random(100) > 0.5
    text = encode_bits(bits)
    assert len(text) == 26
    np.testing.assert_array_equal(decode_bits(text, 100), bits)
    with pytest.raises(ValueError, match="bits"):
        decode_bits(text, 1000)


# --------------------------------------------------------------------------------------------
# The evaluator: streaming, failures, figures
# --------------------------------------------------------------------------------------------

def blob_map(shape, centres, rng, noise=0.05):
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    out = noise * rng.random(shape)
    for cy, cx, s, a in centres:
        out += a * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    return out.astype(np.float32)


def random_samples(n: int, seed: int = 0, prefix: str = "img") -> list[MapSample]:
    """Images of various sizes with 1-3 boxes of the class and blob maps in the resized frame."""
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(n):
        h, w = [(375, 500), (500, 333), (300, 300), (480, 640)][i % 4]
        rh, rw = (256, round(w * 256 / h)) if h <= w else (round(h * 256 / w), 256)
        boxes = []
        for _ in range(int(rng.integers(1, 4))):
            x0, y0 = int(rng.integers(0, w - 60)), int(rng.integers(0, h - 60))
            boxes.append((x0, y0, int(rng.integers(x0 + 30, w)), int(rng.integers(y0 + 30, h))))
        centres = []
        for b in boxes[: int(rng.integers(1, len(boxes) + 1))]:
            cx, cy = (b[0] + b[2]) / 2 * rw / w, (b[1] + b[3]) / 2 * rh / h
            centres.append((cy + rng.normal(0, 15), cx + rng.normal(0, 15), rng.uniform(10, 50), rng.uniform(0.5, 1)))
        centres.append((rng.uniform(0, rh), rng.uniform(0, rw), rng.uniform(5, 30), rng.uniform(0.2, 0.8)))
        gt_map = blob_map((rh, rw), centres, rng)
        other = blob_map((rh, rw), [(rng.uniform(0, rh), rng.uniform(0, rw), 20, 1)], rng)
        top1_first = bool(rng.random() < 0.5)
        maps = np.stack([gt_map, other] if top1_first else [other, gt_map])
        synsets = [CLS, OTHER] if top1_first else [OTHER, CLS]
        ann = annotation(f"{prefix}{i:03d}", (h, w), *boxes)
        samples.append(MapSample(ann.image_id, ann, (h, w), synsets, maps))
    return samples


@pytest.fixture(scope="module")
def samples() -> list[MapSample]:
    return random_samples(12)


def run_evaluator(ev, samples, chunks=None, failed=(), order=None):
    ev.start({s.image_id: s.annotation for s in samples})
    results = [ImageResult(s.image_id, status="failed") if s.image_id in failed
               else ImageResult(s.image_id, states={ev.name: ev.image_state(s)}) for s in samples]
    if order is not None:
        results = [results[i] for i in order]
    chunks = chunks or [len(results)]
    pos = 0
    for size in chunks:
        ev.accumulate(results[pos:pos + size])
        pos += size
    assert pos == len(results)
    return ev.compute()


@pytest.mark.slow  # more than a few seconds
@pytest.mark.parametrize("cls", [MaxBoxAcc, PointingGame])
def test_streaming_is_independent_of_chunks_and_order(cls, samples):
    one_shot = run_evaluator(cls(), samples)
    for seed in range(3):
        order = list(range(len(samples)))
        random.Random(seed).shuffle(order)
        assert run_evaluator(cls(), samples, chunks=[5, 1, 4, 2], order=order) == one_shot
    # merged shards: states went through JSON (records on disk) first
    ev = cls()
    ev.start({s.image_id: s.annotation for s in samples})
    states = [json.loads(json.dumps(ev.image_state(s))) for s in samples]
    for shard in (slice(1, None, 2), slice(0, None, 2)):
        ev.accumulate([ImageResult(s.image_id, states={ev.name: st})
                       for s, st in zip(samples[shard], states[shard])])
    assert ev.compute() == one_shot


def test_maxboxacc_figures_are_consistent(samples):
    summary = run_evaluator(MaxBoxAcc(), samples)
    curve = np.asarray(summary["maxboxacc_curve"])
    assert len(curve) == 100 and summary["maxboxacc"] == pytest.approx(curve.max(), abs=1e-4)
    assert summary["maxboxacc_best_threshold"] == round(float(THR[int(np.argmax(curve))]), 10)
    at = summary["maxboxacc_v2_at_iou"]
    assert set(at) == {"30", "50", "70"} and at["30"] >= at["50"] >= at["70"]
    assert summary["maxboxacc_v2"] == pytest.approx(np.mean(list(at.values())))
    assert at["50"] >= summary["maxboxacc"]  # every contour includes the largest one
    assert 0 < summary["maxboxacc"] <= 100 and summary["maxboxacc_n_images"] == len(samples)
    # every accuracy is a count over 12 images
    assert summary["maxboxacc"] * len(samples) / 100 == pytest.approx(round(summary["maxboxacc"] * 0.12))


def test_failed_and_missing_images_miss_at_every_threshold(samples):
    ids = {samples[0].image_id, samples[3].image_id}
    full = MaxBoxAcc()
    full.start({s.image_id: s.annotation for s in samples})
    kept = [s for s in samples if s.image_id not in ids]
    states = {s.image_id: full.image_state(s) for s in kept}
    with_failed = run_evaluator(MaxBoxAcc(), samples, failed=ids)
    # the same as scoring only the others, rescaled to the larger denominator
    only_kept = run_evaluator(MaxBoxAcc(), kept)
    assert with_failed["maxboxacc"] == pytest.approx(only_kept["maxboxacc"] * len(kept) / len(samples))
    assert with_failed["maxboxacc_n_without_map"] == 2
    # never accumulated counts the same as failed
    ev = MaxBoxAcc()
    ev.start({s.image_id: s.annotation for s in samples})
    ev.accumulate([ImageResult(i, states={"maxboxacc": st}) for i, st in states.items()])
    assert ev.compute() == with_failed
    with pytest.raises(ValueError, match="twice"):
        ev.accumulate([ImageResult(kept[0].image_id, states={"maxboxacc": states[kept[0].image_id]})])
    with pytest.raises(ValueError, match="not in the evaluated set"):
        ev.accumulate([ImageResult("nope")])


def test_parameters_are_checked():
    with pytest.raises(ValueError, match="iou_thresholds"):
        METRICS.create("maxboxacc", {"iou_thresholds": [30, 150]}, "evaluation.maxboxacc")
    with pytest.raises(ValueError, match="cam_curve_interval"):
        METRICS.create("maxboxacc", {"cam_curve_interval": 0}, "evaluation.maxboxacc")
    with pytest.raises(ValueError, match="tolerance"):
        METRICS.create("pointing_game", {"tolerance": 0}, "evaluation.pointing_game")


def test_default_config_runs_all_three_metrics():
    cfg = yaml.safe_load((REPO / "conf" / "evaluation" / "default.yaml").read_text())
    assert cfg["metrics"] == ["ilsvrc", "maxboxacc", "pointing_game"]
    evs = [METRICS.create(n, cfg.get(n), f"evaluation.{n}") for n in cfg["metrics"]]
    assert isinstance(evs[1], MaxBoxAcc) and evs[1].iou_thresholds == (30, 50, 70)
    assert isinstance(evs[2], PointingGame) and evs[2].tolerance == 15


def test_artifacts_curve_csv_and_plot(tmp_path, samples):
    ev = MaxBoxAcc()
    summary = run_evaluator(ev, samples)
    section = section_of("maxboxacc")
    section.artifacts(ev, summary, tmp_path)
    lines = (tmp_path / "maxboxacc_curve.csv").read_text().splitlines()
    assert lines[0] == "threshold,maxboxacc,all_boxes_iou30,all_boxes_iou50,all_boxes_iou70"
    assert len(lines) == 101 and lines[30].startswith("0.29,")
    assert (tmp_path / "maxboxacc_curve.png").stat().st_size > 1000
    text = "\n".join(section.lines(ev, summary))
    assert "MaxBoxAccV2" in text and f"{summary['maxboxacc']:.2f}" in text
    assert section.columns(ev, summary) == {"maxboxacc": summary["maxboxacc"], "maxboxacc_v2": summary["maxboxacc_v2"]}


# --------------------------------------------------------------------------------------------
# Literal oracle of clovaai/wsolevaluation's BoxEvaluator (test-only, loops, from its code)
# --------------------------------------------------------------------------------------------

def oracle_wsolevaluation(cams, boxes, sizes, multi_contour_eval, iou_threshold_list, interval=0.01):
    """``cams``: id -> raw CAM; ``boxes``: id -> [(x0, y0, x1, y1)] original; ``sizes``: id -> (w, h).
    Returns the best-threshold accuracy (percent) for each IoU, as BoxEvaluator.compute()."""
    cam_threshold_list = list(np.arange(0, 1, interval))
    num_correct = {t: np.zeros(len(cam_threshold_list)) for t in iou_threshold_list}
    cnt = 0
    for image_id, cam in cams.items():
        # CAMComputer: resize (cubic), normalize_scoremap
        cam = cv2.resize(np.asarray(cam, dtype=np.float64), (224, 224), interpolation=cv2.INTER_CUBIC)
        if np.isnan(cam).any() or cam.min() == cam.max():
            cam = np.zeros_like(cam)
        else:
            cam -= cam.min()
            cam /= cam.max()
        # resize_bbox
        w, h = map(float, sizes[image_id])
        gt = [(int(b[0] * 224.0 / w), int(b[1] * 224.0 / h), int(b[2] * 224.0 / w), int(b[3] * 224.0 / h))
              for b in boxes[image_id]]
        # compute_bboxes_from_scoremaps
        image = np.expand_dims((cam * 255).astype(np.uint8), 2)
        estimated, numbers = [], []
        for threshold in cam_threshold_list:
            _, thr = cv2.threshold(src=image, thresh=int(threshold * np.max(image)), maxval=255,
                                   type=cv2.THRESH_BINARY)
            contours = cv2.findContours(image=thr, mode=cv2.RETR_TREE, method=cv2.CHAIN_APPROX_SIMPLE)[0]
            if len(contours) == 0:
                estimated.append([0, 0, 0, 0])
                numbers.append(1)
                continue
            if not multi_contour_eval:
                contours = [max(contours, key=cv2.contourArea)]
            for c in contours:
                x, y, bw, bh = cv2.boundingRect(c)
                estimated.append([x, y, min(x + bw, 223), min(y + bh, 223)])
            numbers.append(len(contours))
        # calculate_multiple_iou
        ious = np.zeros((len(estimated), len(gt)))
        for i, a in enumerate(estimated):
            for j, b in enumerate(gt):
                inter = max(0, min(a[2], b[2]) - max(a[0], b[0]) + 1) * max(0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
                den = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - inter
                ious[i, j] = 0 if den <= 0 else inter / den
        idx, sliced = 0, []
        for nr in numbers:
            sliced.append(max(ious.max(1)[idx:idx + nr]))
            idx += nr
        for t in iou_threshold_list:
            num_correct[t][np.where(np.asarray(sliced) >= (t / 100))[0]] += 1
        cnt += 1
    return [(num_correct[t] * 100.0 / float(cnt)).max() for t in iou_threshold_list]


def oracle_inputs(samples):
    cams = {s.image_id: s.map_of(CLS) for s in samples}
    boxes = {s.image_id: [b.coords for b in s.annotation.boxes] for s in samples}
    sizes = {s.image_id: (s.original_size[1], s.original_size[0]) for s in samples}
    return cams, boxes, sizes


@pytest.mark.slow  # more than a few seconds
def test_matches_wsolevaluation_oracle(samples):
    extra = random_samples(8, seed=7, prefix="extra")
    # a constant map and a map already 224 x 224 among them
    extra[0].maps[extra[0].synsets.index(CLS)][:] = 0.5
    square = extra[1]
    square = MapSample(square.image_id, square.annotation, square.original_size, square.synsets,
                       np.stack([cv2.resize(m, (224, 224)) for m in square.maps]))
    every = [*samples, extra[0], square, *extra[2:]]
    summary = run_evaluator(MaxBoxAcc(), every)
    cams, boxes, sizes = oracle_inputs(every)
    (v1,) = oracle_wsolevaluation(cams, boxes, sizes, False, [50])
    v2 = oracle_wsolevaluation(cams, boxes, sizes, True, [30, 50, 70])
    assert summary["maxboxacc"] == v1
    assert [summary["maxboxacc_v2_at_iou"][k] for k in ("30", "50", "70")] == v2
    assert summary["maxboxacc_v2"] == np.average(v2)
    assert 0 < v1 < 100 and v2[0] > v2[2]  # the data is not trivial


# --------------------------------------------------------------------------------------------
# Pointing game (TorchRay)
# --------------------------------------------------------------------------------------------

def torchray_hit(mask_boxes, size, point, tolerance=15):
    """TorchRay's PointingGame.evaluate on the boxes' mask (test oracle)."""
    import torch

    h, w = size
    mask = torch.zeros((h, w), dtype=torch.bool)
    for b in mask_boxes:
        mask[b.ymin:b.ymax + 1, b.xmin:b.xmax + 1] = True
    v, u = torch.meshgrid((torch.arange(h, dtype=torch.float32) - point[1]) ** 2,
                          (torch.arange(w, dtype=torch.float32) - point[0]) ** 2, indexing="ij")
    return bool((mask & ((v + u) < tolerance ** 2)).view(-1).any())


def peak_map(size, x, y):
    m = np.zeros(size, dtype=np.float32)
    m[y, x] = 1.0
    return m


@pytest.mark.parametrize(("x", "y", "hit"), [
    (85, 60, True),  # 14 px right of the box (xmax 71)
    (86, 60, False),  # 15 px: not < 15
    (87, 60, False),  # 16 px
    (60, 36, True),  # 14 px above (ymin 50)
    (60, 34, False),  # 16 px above
    (81, 81, True),  # diagonal (10, 10) from the corner: 200 < 225
    (82, 82, False),  # diagonal (11, 11): 242
    (60, 60, True),  # inside
])
def test_pointing_tolerance_edge(x, y, hit):
    box = Box(50, 50, 71, 71, CLS)
    size = (120, 160)
    assert pointing_hit(peak_map(size, x, y), [box]) is hit
    assert torchray_hit([box], size, (x, y)) is hit


def test_point_hits_equals_torchray_mask_test():
    rng = np.random.default_rng(3)
    size = (60, 80)
    for _ in range(300):
        boxes = []
        for _ in range(int(rng.integers(1, 3))):
            x0, y0 = int(rng.integers(0, 80)), int(rng.integers(0, 60))
            boxes.append(Box(x0, y0, int(rng.integers(x0, 80)), int(rng.integers(y0, 60))))
        point = (int(rng.integers(0, 80)), int(rng.integers(0, 60)))
        tol = int(rng.integers(1, 20))
        assert point_hits(point, boxes, size, tol) == torchray_hit(boxes, size, point, tol)


def test_point_is_first_maximum_row_major():
    m = np.zeros((5, 7))
    m[3, 1] = m[2, 6] = 1.0
    assert pointing_point(m) == (6, 2)


def torchray_point(saliency: np.ndarray, size) -> tuple[int, int]:
    """TorchRay's resize_saliency + _saliency_to_point (test oracle)."""
    import torch
    import torch.nn.functional as F

    m = F.interpolate(torch.from_numpy(saliency.astype(np.float32))[None, None], size, mode="bilinear",
                      align_corners=False)
    w = m.shape[3]
    point = torch.argmax(m.view(1, -1), dim=1, keepdim=True)
    return tuple(int(v) for v in torch.cat((point % w, point // w), dim=1)[0])


def test_point_is_torchrays_point():
    """Enlarged (the usual case), reduced and same-size maps; near-ties included."""
    from wsol_bench.frames import map_to_original

    rng = np.random.default_rng(4)
    moved = 0
    for shape, size in [((16, 20), (40, 50)), ((256, 341), (375, 500)), ((9, 9), (31, 17)),
                        ((256, 384), (200, 300)), ((30, 30), (30, 30))] * 10:
        m = rng.random(shape).astype(np.float32)
        m[rng.integers(0, shape[0]), rng.integers(0, shape[1])] = m.max()  # a near-tie after resizing
        assert pointing_point(torchray_resize(m, size)) == torchray_point(m, size)
        moved += pointing_point(map_to_original(m, size)) != torchray_point(m, size)
    assert moved > 0  # the project's own resize would not be TorchRay's


def test_pointing_state_ground_truth_and_top1():
    size = (100, 100)
    ann = ImageAnnotation("a", 100, 100, (Box(10, 10, 30, 30, CLS),))
    on_box, off_box = peak_map(size, 20, 20), peak_map(size, 90, 90)
    ev = PointingGame()
    # top-1 is the ground-truth class: one map, one answer
    assert ev.image_state(MapSample("a", ann, size, [CLS], off_box[None])) == {"hit": 0, "top1_hit": 0}
    # top-1 is another class without a box: a miss, even though its map points at the object
    state = ev.image_state(MapSample("a", ann, size, [OTHER, CLS], np.stack([on_box, on_box])))
    assert state == {"hit": 1, "top1_hit": 0}
    # top-1 class with a box of its own: scored on maps[0] against that class's boxes
    ann2 = ImageAnnotation("a", 100, 100, (Box(10, 10, 30, 30, CLS), Box(80, 80, 95, 95, OTHER)))
    state = ev.image_state(MapSample("a", ann2, size, [OTHER, CLS], np.stack([off_box, on_box])))
    assert state == {"hit": 1, "top1_hit": 1}
    state = ev.image_state(MapSample("a", ann2, size, [OTHER, CLS], np.stack([on_box, off_box])))
    assert state == {"hit": 0, "top1_hit": 0}


def test_pointing_uses_original_pixels():
    """Peak 10 px (resized frame) right of the box is 20 px away in an image twice as large."""
    ann = ImageAnnotation("a", 200, 200, (Box(0, 0, 99, 199, CLS),))  # left half of a 200 x 200 image
    resized = np.zeros((100, 100), dtype=np.float32)
    resized[:, 55:62] = np.hanning(9)[1:8]  # peak at column 58 -> ~116.5 in original pixels, 17 px away
    assert PointingGame().image_state(MapSample("a", ann, (200, 200), [CLS], resized[None]))["hit"] == 0
    assert PointingGame(tolerance=20).image_state(MapSample("a", ann, (200, 200), [CLS], resized[None]))["hit"] == 1


def test_pointing_figures(samples):
    summary = run_evaluator(PointingGame(), samples, failed={samples[0].image_id})
    ev = PointingGame()
    states = [ev.image_state(s) for s in samples[1:]]
    assert summary["pointing_game"] == sum(s["hit"] for s in states) / len(samples)
    assert summary["pointing_game_top1"] == sum(s["top1_hit"] for s in states) / len(samples)
    assert summary["pointing_game_class_mean"] == summary["pointing_game"]  # one class
    assert summary["pointing_game_n_without_map"] == 1
    lo, hi = summary["pointing_game_ci95"]
    assert lo <= summary["pointing_game"] <= hi


def test_pointing_class_mean_is_over_classes():
    size = (50, 50)
    hit_map, miss_map = peak_map(size, 5, 5), peak_map(size, 45, 45)
    samples = [MapSample(f"{c}{i}", ImageAnnotation(f"{c}{i}", 50, 50, (Box(0, 0, 10, 10, c),)), size, [c], m[None])
               for c, maps in ((CLS, [hit_map, miss_map, miss_map, miss_map]), (OTHER, [hit_map]))
               for i, m in enumerate(maps)]
    summary = run_evaluator(PointingGame(), samples)
    assert summary["pointing_game"] == pytest.approx(2 / 5)
    assert summary["pointing_game_class_mean"] == pytest.approx((1 / 4 + 1) / 2)


# --------------------------------------------------------------------------------------------
# Export in wsolevaluation's layout, and scoring such a folder
# --------------------------------------------------------------------------------------------

@pytest.mark.slow  # more than a few seconds
def test_export_round_trip(tmp_path, samples):
    folder = tmp_path / "scoremaps"
    for s in samples:
        write_scoremap(folder, s.image_id, s.map_of(s.annotation.label))
    gt = {s.image_id: s.annotation for s in samples}
    meta_dir = write_metadata(folder, {k: ImageAnnotation(k, None, None, a.boxes) for k, a in gt.items()},
                              original_sizes={s.image_id: s.original_size for s in samples})
    # the files, in wsolevaluation's formats
    first = samples[0]
    h, w = first.original_size
    assert (meta_dir / "image_ids.txt").read_text().splitlines() == [s.image_id for s in samples]
    assert (meta_dir / "class_labels.txt").read_text().splitlines()[0] == f"{first.image_id},0"
    assert (meta_dir / "image_sizes.txt").read_text().splitlines()[0] == f"{first.image_id},{w},{h}"
    b = first.annotation.boxes[0]
    assert (meta_dir / "localization.txt").read_text().splitlines()[0] == \
        f"{first.image_id},{b.xmin},{b.ymin},{b.xmax},{b.ymax}"
    meta = read_metadata(meta_dir)
    assert meta.image_sizes[first.image_id] == (w, h)
    assert meta.boxes[first.image_id] == [x.coords for x in first.annotation.boxes]
    stored = np.load(folder / f"{first.image_id}.npy")
    assert stored.shape == (224, 224) and stored.dtype == np.float64 and stored.min() == 0 and stored.max() == 1
    np.testing.assert_array_equal(stored, read_scoremap(folder, first.image_id))

    # scoring the folder (sizes from the metadata) gives the run's MaxBoxAcc exactly
    run = {**run_evaluator(MaxBoxAcc(), samples), **run_evaluator(PointingGame(), samples)}
    folder_summary = scoremap_figures(folder, {k: ImageAnnotation(k, None, None, a.boxes) for k, a in gt.items()})
    for key in ("maxboxacc", "maxboxacc_v2", "maxboxacc_v2_at_iou", "maxboxacc_best_threshold", "maxboxacc_curve"):
        assert folder_summary[key] == run[key], key
    assert folder_summary["pointing_game"] == run["pointing_game"]  # blob peaks survive the 224 detour here
    assert folder_summary["pointing_game_top1"] is None

    # ... and wsolevaluation's own algorithm on the files reads the same
    ids = meta.image_ids
    cams = {i: np.load(folder / f"{i}.npy") for i in ids}
    v2 = oracle_wsolevaluation(cams, meta.boxes, meta.image_sizes, True, [30, 50, 70])
    assert [folder_summary["maxboxacc_v2_at_iou"][k] for k in ("30", "50", "70")] == v2


def scoremap_figures(folder, ground_truth, **options) -> dict:
    return score_maps(folder, ground_truth, [MaxBoxAcc(), PointingGame()], **options).figures


def test_scoring_a_folder_checks_maps_and_sizes(tmp_path):
    ann = ImageAnnotation("x", None, None, (Box(0, 0, 10, 10, CLS),))
    with pytest.raises(ValueError, match="1 of the 1 evaluated images have no score map"):
        scoremap_figures(tmp_path, {"x": ann}, original_sizes={"x": (50, 50)})
    np.save(tmp_path / "x.npy", np.full((224, 224), 1.5))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        scoremap_figures(tmp_path, {"x": ann}, original_sizes={"x": (50, 50)})
    np.save(tmp_path / "x.npy", np.zeros((100, 100)))
    with pytest.raises(ValueError, match="224 x 224"):
        scoremap_figures(tmp_path, {"x": ann}, original_sizes={"x": (50, 50)})
    write_scoremap(tmp_path, "x", np.ones((60, 60)))
    with pytest.raises(ValueError, match="size is unknown"):
        scoremap_figures(tmp_path, {"x": ann})
    # a foreign map is used as it is (not renormalised): a map peaking at 100/255
    levels = np.zeros((224, 224))
    levels[223, 223] = 100
    levels[0:112, 0:112] = 29  # foreground at t = 0.29 only through int(28.999...) = 28
    np.save(tmp_path / "x.npy", u8map(levels))
    ann = ImageAnnotation("x", 224, 224, (Box(0, 0, 111, 111, CLS),))
    summary = scoremap_figures(tmp_path, {"x": ann})
    assert summary["maxboxacc"] == 100.0
    assert summary["maxboxacc_curve"][29] == 100.0 and summary["maxboxacc_curve"][30] == 0.0


def test_bad_ids_and_unknown_sizes_are_refused(tmp_path):
    with pytest.raises(ValueError, match="cannot name"):
        write_scoremap(tmp_path, "../escape", np.ones((5, 5)))
    with pytest.raises(ValueError, match="size is unknown"):
        write_metadata(tmp_path, {"x": ImageAnnotation("x", None, None, (Box(0, 0, 1, 1, CLS),))})


def test_score_map_sizes_that_disagree_are_an_error_and_metric_settings_apply(tmp_path):
    """The image file's size against the XML's names both; the pointing game's tolerance (an
    ``evaluation.*`` setting) changes the score of the same folder."""
    ann = ImageAnnotation("x", 224, 224, (Box(0, 0, 99, 99, CLS),))
    peak = np.zeros((224, 224))
    peak[120, 120] = 1.0  # 21 pixels right of and below the box's corner (99, 99): 29.7 away
    np.save(tmp_path / "x.npy", peak)
    with pytest.raises(ValueError, match=r"the image file gives the image size 200x224 but its ground truth "
                                         r"\(XML <size>\) gives 224x224"):
        scoremap_figures(tmp_path, {"x": ann}, original_sizes={"x": (224, 200)})
    near = score_maps(tmp_path, {"x": ann}, [PointingGame(tolerance=15)]).figures
    far = score_maps(tmp_path, {"x": ann}, [PointingGame(tolerance=30)]).figures
    assert near["pointing_game"] == 0.0 and far["pointing_game"] == 1.0
