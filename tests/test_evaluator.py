"""The devkit-exact evaluator: hand-made conventions and the devkit's own demo figures."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from wsol_bench.boxes import Box, ImageAnnotation, iou_inclusive
from wsol_bench.data.ground_truth import read_solution_csv
from wsol_bench.data.predictions import (
    PREDICTION_COLUMNS,
    read_devkit_predictions,
    write_devkit_predictions,
)
from wsol_bench.data.synsets import read_devkit_meta
from wsol_bench.metrics.ilsvrc import IlsvrcLocalisation, evaluate_predictions
from wsol_bench.metrics.intervals import wilson_interval

FISH, GOLDFISH = "n01440764", "n01443537"


def evaluate(*args, **kwargs):
    summary, per_image = evaluate_predictions(*args, **kwargs)
    return SimpleNamespace(**summary), per_image


def started(ground_truth) -> IlsvrcLocalisation:
    ev = IlsvrcLocalisation()
    ev.start(ground_truth)
    return ev


def gt_one(*boxes: tuple[int, int, int, int], label: str = FISH) -> dict[str, ImageAnnotation]:
    return {"img": ImageAnnotation("img", 100, 100, tuple(Box(*b, label) for b in boxes))}


def guesses(*rows) -> pd.DataFrame:
    return pd.DataFrame([("img", r + 1, *row) for r, row in enumerate(rows)], columns=PREDICTION_COLUMNS)


def test_iou_uses_inclusive_pixels():
    # 10x10 boxes overlapping in a 10x5 strip: 50 / (100 + 100 - 50) = 1/3
    assert iou_inclusive(np.array([0, 0, 9, 9]), np.array([0, 5, 9, 14])) == pytest.approx(1 / 3)
    assert iou_inclusive(np.array([0, 0, 9, 9]), np.array([10, 0, 19, 9])) == 0.0  # iw = 0
    assert iou_inclusive(np.array([0, 0, 0, 0]), np.array([0, 0, 0, 0])) == 1.0  # single pixel


def test_iou_exactly_half_passes_and_just_under_fails():
    # GT 100x100 px; a 100x50 guess inside it has IoU 5000 / 10000 = 0.5 exactly with +1 widths
    # (without the +1 it would be 99*49 / (99*99) < 0.5 and fail)
    m, _ = evaluate(guesses((FISH, 0, 0, 99, 49)), gt_one((0, 0, 99, 99)))
    assert m.loc_error_at_k[0] == 0.0
    # one row less: 4900 / 10000 = 0.49
    m, _ = evaluate(guesses((FISH, 0, 0, 99, 48)), gt_one((0, 0, 99, 99)))
    assert m.loc_error_at_k[0] == 1.0


def test_right_label_wrong_box_fails_and_wrong_label_right_box_fails():
    m, per = evaluate(guesses((FISH, 50, 50, 60, 60), (GOLDFISH, 0, 0, 9, 9)), gt_one((0, 0, 9, 9)))
    assert m.loc_error_at_k == [1.0] * 5
    assert m.cls_error_at_k == [0.0] * 5
    assert per.loc_rank.tolist() == [0] and per.cls_rank.tolist() == [1]


def test_second_gt_box_matches():
    m, _ = evaluate(guesses((FISH, 50, 50, 69, 69)), gt_one((0, 0, 9, 9), (50, 50, 70, 70)))
    assert m.loc_error_at_k[0] == 0.0


def test_error_at_k_counts_first_k_guesses_and_ignores_extra():
    rows = [(GOLDFISH, 0, 0, 9, 9)] * 2 + [(FISH, 0, 0, 9, 9)] + [(GOLDFISH, 0, 0, 1, 1)] * 3
    m, per = evaluate(guesses(*rows), gt_one((0, 0, 9, 9)))
    assert m.loc_error_at_k == [1.0, 1.0, 0.0, 0.0, 0.0]
    rows = [(GOLDFISH, 0, 0, 9, 9)] * 5 + [(FISH, 0, 0, 9, 9)]  # 6th guess ignored
    m, _ = evaluate(guesses(*rows), gt_one((0, 0, 9, 9)))
    assert m.loc_error_at_k[-1] == 1.0 and m.cls_error_at_k[-1] == 1.0


def test_missing_box_and_missing_image_count_as_errors():
    gt = {**gt_one((0, 0, 9, 9)), "other": ImageAnnotation("other", 10, 10, (Box(0, 0, 9, 9, FISH),))}
    ev = started(gt)
    ev.accumulate_table(guesses((FISH, np.nan, np.nan, np.nan, np.nan)))
    m = SimpleNamespace(**ev.compute())
    assert m.n_images == 2 and m.n_missing == 1
    assert m.loc_error_at_k[0] == 1.0 and m.cls_error_at_k[0] == 0.5


def test_streaming_equals_one_shot_and_rejects_repeats():
    rng = np.random.default_rng(0)
    gt = {f"i{n}": ImageAnnotation(f"i{n}", 50, 50, (Box(5, 5, 30, 30, FISH),)) for n in range(40)}
    rows = []
    for n in range(40):
        for r in range(1, 6):
            x0, y0 = rng.integers(0, 20, size=2)
            rows.append((f"i{n}", r, FISH if rng.random() < 0.5 else GOLDFISH, x0, y0, x0 + 25, y0 + 25))
    preds = pd.DataFrame(rows, columns=PREDICTION_COLUMNS)
    whole, _ = evaluate(preds, gt)
    ev = started(gt)
    for chunk in np.array_split(np.arange(40), 3):
        ids = [f"i{n}" for n in chunk]
        ev.accumulate_table(preds[preds.image_id.isin(ids)], ids)
    assert SimpleNamespace(**ev.compute()) == whole
    with pytest.raises(ValueError, match="accumulated twice"):
        ev.accumulate_table(preds[preds.image_id == "i0"])
    with pytest.raises(ValueError, match="without ground truth"):
        started(gt).accumulate_table(preds[preds.image_id == "i0"].assign(image_id="nope"))


def test_gt_known_uses_the_ground_truth_class_box():
    gt = gt_one((0, 0, 9, 9))
    boxes = pd.DataFrame([("img", 0, 0, 9, 9)], columns=["image_id", "xmin", "ymin", "xmax", "ymax"])
    m, per = evaluate(guesses((GOLDFISH, 0, 0, 9, 9)), gt, gt_known_boxes=boxes)
    assert m.gt_known_loc_error == 0.0 and m.loc_error_at_k[0] == 1.0
    assert per.gt_known_iou.tolist() == [1.0]


def test_wilson_interval():
    lo, hi = wilson_interval(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-4) and hi == pytest.approx(0.5962, abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0


def test_devkit_round_trip(tmp_path, shared_sample):
    meta = read_devkit_meta(shared_sample / "devkit" / "meta.mat")
    preds = guesses((FISH, 1, 2, 3, 4), (GOLDFISH, 5, 6, 7, 8))
    path = tmp_path / "pred.txt"
    write_devkit_predictions(path, preds, ["img"], meta)
    assert path.read_text().split() == [str(meta.index(FISH)), "1", "2", "3", "4",
                                        str(meta.index(GOLDFISH)), "5", "6", "7", "8"]
    back = read_devkit_predictions(path, ["img"], meta)
    pd.testing.assert_frame_equal(back, preds, check_dtype=False)
    with pytest.raises(ValueError, match=r"pred.txt: 1 prediction lines but 2 images"):
        read_devkit_predictions(path, ["img", "img2"], meta)


@pytest.mark.slow
def test_devkit_demo_figures(shared_sample):
    """The devkit readme's figures for its demo submissions, against all 50,000 images."""
    meta = read_devkit_meta(shared_sample / "devkit" / "meta.mat")
    gt = read_solution_csv(shared_sample / "LOC_val_solution.csv")
    gt = {k: gt[k] for k in sorted(gt)}
    det = read_devkit_predictions(shared_sample / "devkit" / "demo.val.pred.det.txt.gz", list(gt), meta)
    m, per = evaluate(det, gt)
    assert [round(e, 4) for e in m.loc_error_at_k] == [1.0, 0.9999, 0.9998, 0.9997, 0.9996]
    assert int((per.loc_rank > 0).sum()) == 18
    cls = read_devkit_predictions(shared_sample / "devkit" / "demo.val.pred.txt", list(gt), meta, with_boxes=False)
    m, _ = evaluate(cls, gt)
    assert [round(e, 4) for e in m.cls_error_at_k] == [0.999, 0.998, 0.9972, 0.9962, 0.995]
