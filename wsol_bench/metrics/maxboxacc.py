"""MaxBoxAcc and MaxBoxAccV2, as clovaai/wsolevaluation's ``BoxEvaluator`` computes them.

Choe et al., "Evaluating Weakly Supervised Object Localization Methods Right" (CVPR 2020).
Every step follows wsolevaluation's code (``inference.py``, ``evaluation.py``), odd
conventions included:

1. **Score map.** The ground-truth class's map (the resized frame: the whole image,
   shorter side 256, not cropped) is made float64 and resized to 224 x 224 with
   ``cv2.INTER_CUBIC`` (``CAMComputer``: the map stretched to the square, as their
   network input is the whole image stretched to 224 x 224), *then* min-max normalised
   (``normalize_scoremap``): a map with any NaN, or a constant map (all zero included),
   becomes all zeros. "Constant" is judged *after* the resize: an all-zero map stays zero,
   but a constant 0.7 picks up rounding noise in the cubic weights (a spread of 4e-16) that
   the normalisation stretches to [0, 1], as in wsolevaluation. Cubic interpolation may
   overshoot below 0; the normalisation absorbs it. A map already 224 x 224 is not resized
   (OpenCV's same-size resize is an exact copy). (Infinite values are treated like NaN:
   wsolevaluation would produce NaNs there and cast them to uint8, which is undefined.)
2. **Ground-truth boxes** (those of the image's class; CLS-LOC validation images have one
   class) go from the original ``(width, height)`` to 224 x 224 as
   ``int(x * 224 / width)``, each coordinate truncated (``resize_bbox``). A box ending on
   the last column of a 500-wide image therefore ends on column ``int(499 * 224 / 500) =
   223``; one starting at column 3 starts at ``int(1.344) = 1``.
3. **Thresholds** ``list(np.arange(0, 1, cam_curve_interval))``: 0.00, 0.01, ..., 0.99 for
   the interval 0.01 (their CLI default), floating-point values as ``np.arange`` makes them.
4. **Boxes at a threshold** (``compute_bboxes_from_scoremaps``): the map becomes uint8 by
   truncation, ``(map * 255).astype(uint8)`` (0.999 -> 254); OpenCV's ``THRESH_BINARY`` at
   ``int(t * max(uint8 map))`` keeps the pixels *strictly above* it, so a pixel exactly at
   the threshold is background, and at t = 0 every non-zero pixel is foreground; and
   ``int(t * 255)`` is truncated after floating-point rounding (0.29 * 255 = 73.95 -> 73).
   Contours come from ``cv2.findContours(RETR_TREE, CHAIN_APPROX_SIMPLE)``, holes'
   contours included. Each contour gives ``x, y, w, h = cv2.boundingRect`` and the box
   ``x0, y0, x1, y1 = x, y, x + w, y + h`` with ``x1, y1`` clipped to 223: an *exclusive*
   end, which their IoU then reads as inclusive, so a box is one pixel wider and taller
   than its region except where it touches the right or bottom edge. No contour (an empty
   mask: e.g. a constant or all-zero map, or a threshold above every pixel) gives the box
   ``[0, 0, 0, 0]``: the top-left pixel, which still scores an IoU with a ground-truth box
   covering it.
5. **IoU** (``calculate_multiple_iou``): inclusive ``+1`` widths and heights, intersection
   clamped at 0, a non-positive union gives 0.
6. **Hit**: an image counts at a threshold when the best IoU over its boxes there and its
   ground-truth boxes is ``>= iou / 100`` (``_THRESHOLD / 100`` in their code).
   *MaxBoxAcc* (``multi_contour_eval=False``): only the contour of largest
   ``cv2.contourArea`` (the first of equal ones, Python's ``max``), IoU 50; the figure is
   the best threshold's accuracy. *MaxBoxAccV2* (``multi_contour_eval=True``,
   ``multi_iou_eval=True``): every contour's box, and the mean over IoU 30, 50, 70 of the
   best-threshold accuracy at each (each IoU picks its own threshold).

Accuracies are percentages (``num_correct * 100 / count``), over every image of the
evaluated set: a failed image (or one never accumulated) misses at every threshold.

Streaming: :meth:`MaxBoxAcc.image_state` reduces an image to its hit vectors over the
thresholds (4 x 100 bits, stored as hex strings); :meth:`MaxBoxAcc.accumulate` adds them
into per-threshold counts. Besides the counts the evaluator keeps one "seen" flag per image
of the evaluated set (as the ``ilsvrc`` evaluator does) to refuse an image counted twice;
sums of integers make sharded, resumed and reordered runs give exactly the same figures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import cv2
import numpy as np

from wsol_bench.boxes import Box, ImageAnnotation, Size
from wsol_bench.frames import RESIZE_LENGTH, wsol_scoremap
from wsol_bench.metrics.base import Evaluator, ImageResult, MapSample
from wsol_bench.registry import require

#: The IoU (percent) of MaxBoxAcc (``iou_threshold_list.index(50)`` in wsolevaluation).
MAXBOXACC_IOU = 50


def cam_thresholds(cam_curve_interval: float) -> np.ndarray:
    """wsolevaluation's ``cam_threshold_list``: ``np.arange(0, 1, cam_curve_interval)``."""
    return np.arange(0, 1, cam_curve_interval)


def resize_gt_box(box: Box, original_size: Size, length: int = RESIZE_LENGTH) -> tuple[int, int, int, int]:
    """A ground-truth box of the ``original_size = (height, width)`` image in the
    ``length x length`` frame, each coordinate ``int(x * length / width)`` (``resize_bbox``)."""
    image_h, image_w = float(original_size[0]), float(original_size[1])
    new = float(length)
    x0, y0, x1, y1 = map(float, box.coords)
    return int(x0 * new / image_w), int(y0 * new / image_h), int(x1 * new / image_w), int(y1 * new / image_h)


def multiple_iou(box_a: np.ndarray, box_b: np.ndarray) -> np.ndarray:
    """``(len(a), len(b))`` IoUs of ``x0, y0, x1, y1`` integer boxes, wsolevaluation's
    ``calculate_multiple_iou``: ``+1`` sizes, a non-positive union gives 0."""
    a = np.asarray(box_a, dtype=np.int64)[:, None, :]
    b = np.asarray(box_b, dtype=np.int64)[None, :, :]
    iw = np.maximum(0, np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1)
    ih = np.maximum(0, np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    union = area_a + area_b - inter
    degenerate = union <= 0
    ious = inter / np.where(degenerate, 1, union)
    return np.where(degenerate, 0.0, ious)


def boxes_at_thresholds(scoremap: np.ndarray,
                        thresholds: Sequence[float] | np.ndarray) -> list[tuple[np.ndarray, int]]:
    """Per threshold, the boxes of every contour (``(k, 4)`` int64, ``x0, y0, x1, y1``) and the
    position of the largest contour's box among them (``compute_bboxes_from_scoremaps``;
    see the module docstring for the conventions)."""
    height, width = scoremap.shape
    image = (scoremap * 255).astype(np.uint8)
    peak = np.max(image)
    out = []
    for t in thresholds:
        _, mask = cv2.threshold(image, int(t * peak), 255, cv2.THRESH_BINARY)
        contours = cv2.findContours(mask, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
        if len(contours) == 0:
            out.append((np.zeros((1, 4), dtype=np.int64), 0))
            continue
        areas = [cv2.contourArea(c) for c in contours]
        largest = int(np.argmax(areas))  # first of equal areas, as Python's max()
        boxes = []
        for c in contours:
            x, y, w, h = cv2.boundingRect(c)
            boxes.append([x, y, min(x + w, width - 1), min(y + h, height - 1)])
        out.append((np.asarray(boxes, dtype=np.int64), largest))
    return out


def threshold_hits(
    scoremap: np.ndarray, gt_boxes: np.ndarray, thresholds: Sequence[float] | np.ndarray, iou_thresholds: Sequence[int]
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Hit vectors over ``thresholds`` of a 224 x 224 score map in [0, 1] against
    ``gt_boxes`` (``(g, 4)``, the same frame): the largest contour's box at IoU 50
    (MaxBoxAcc), and every contour's boxes at each of ``iou_thresholds`` (MaxBoxAccV2)."""
    best_largest, best_all = [], []
    for boxes, largest in boxes_at_thresholds(scoremap, thresholds):
        per_box = multiple_iou(boxes, gt_boxes).max(axis=1)
        best_largest.append(per_box[largest])
        best_all.append(per_box.max())
    largest_iou, all_iou = np.asarray(best_largest), np.asarray(best_all)
    return largest_iou >= MAXBOXACC_IOU / 100, {iou: all_iou >= iou / 100 for iou in iou_thresholds}


def encode_bits(bits: np.ndarray) -> str:
    """A bool vector as a hex string (``np.packbits``, first bit most significant)."""
    return np.packbits(np.asarray(bits, dtype=bool)).tobytes().hex()


def decode_bits(text: str, n: int) -> np.ndarray:
    """The first ``n`` bits of :func:`encode_bits`'s hex string, as a bool vector."""
    bits = np.unpackbits(np.frombuffer(bytes.fromhex(text), dtype=np.uint8))
    if len(bits) != (n + 7) // 8 * 8:
        raise ValueError(f"a hit vector of {len(bits)} bits where {n} were expected (other thresholds?)")
    return bits[:n].astype(bool)


@dataclass
class MaxBoxAcc(Evaluator):
    """Streaming MaxBoxAcc and MaxBoxAccV2 (the module docstring lists the conventions).

    Parameters: ``cam_curve_interval`` (the score-map threshold step, 0.01 as in
    wsolevaluation's CLI) and ``iou_thresholds`` (percent, MaxBoxAccV2's list).
    """

    name: ClassVar[str] = "maxboxacc"
    needs_maps: ClassVar[bool] = True
    cam_curve_interval: float = 0.01
    iou_thresholds: tuple[int, ...] = (30, 50, 70)
    _row: dict[str, int] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        require(0.0 < self.cam_curve_interval <= 0.5, "cam_curve_interval", self.cam_curve_interval, "in (0, 0.5]")
        require(len(self.iou_thresholds) > 0 and all(0 < i <= 100 for i in self.iou_thresholds)
                and len(set(self.iou_thresholds)) == len(self.iou_thresholds),
                "iou_thresholds", self.iou_thresholds, "distinct integers (percent) in (0, 100]")

    @property
    def thresholds(self) -> np.ndarray:
        return cam_thresholds(self.cam_curve_interval)

    def start(self, ground_truth: Mapping[str, ImageAnnotation]) -> None:
        if not ground_truth:
            raise ValueError("maxboxacc evaluator: the ground truth is empty")
        n_thr = len(self.thresholds)
        self._row = {image_id: i for i, image_id in enumerate(ground_truth)}
        self._seen = np.zeros(len(self._row), dtype=bool)
        self._largest = np.zeros(n_thr, dtype=np.int64)
        self._all = np.zeros((len(self.iou_thresholds), n_thr), dtype=np.int64)
        self._without_state = 0

    def image_state(self, sample: MapSample) -> dict[str, Any] | None:
        saliency = sample.map_of(sample.annotation.label)
        if saliency is None:
            return None
        scoremap = saliency if sample.scoremaps else wsol_scoremap(saliency)  # stored score maps: as they are
        return self.state_from_scoremap(scoremap, sample.annotation, sample.original_size)

    def state_from_scoremap(self, scoremap: np.ndarray, annotation: ImageAnnotation, original_size: Size) -> dict:
        """The state of an image from its 224 x 224 score map in [0, 1] (as wsolevaluation
        reads it) and the ``(height, width)`` of the original image."""
        gt = np.asarray([resize_gt_box(b, original_size) for b in annotation.boxes_of(annotation.label)])
        largest, every = threshold_hits(scoremap, gt, self.thresholds, self.iou_thresholds)
        return {"largest": {str(MAXBOXACC_IOU): encode_bits(largest)},
                "all": {str(iou): encode_bits(hits) for iou, hits in every.items()}}

    def accumulate(self, results: Sequence[ImageResult]) -> None:
        n_thr = len(self.thresholds)
        for r in results:
            row = self._row.get(r.image_id)
            if row is None:
                raise ValueError(f"maxboxacc: image {r.image_id!r} is not in the evaluated set")
            if self._seen[row]:
                raise ValueError(f"maxboxacc: image {r.image_id!r} accumulated twice")
            self._seen[row] = True
            state = r.states.get(self.name) if r.status == "ok" else None
            if state is None:  # failed: a miss at every threshold
                self._without_state += 1
                continue
            self._largest += decode_bits(state["largest"][str(MAXBOXACC_IOU)], n_thr)
            for k, iou in enumerate(self.iou_thresholds):
                self._all[k] += decode_bits(state["all"][str(iou)], n_thr)
        return None

    def compute(self) -> dict[str, Any]:
        n = len(self._row)
        thresholds = self.thresholds
        curve = self._largest * 100.0 / n
        curves = self._all * 100.0 / n
        best = {str(iou): float(c.max()) for iou, c in zip(self.iou_thresholds, curves)}
        return {
            "maxboxacc": float(curve.max()),
            "maxboxacc_best_threshold": _threshold(thresholds[int(np.argmax(curve))]),
            "maxboxacc_v2": float(np.average(list(best.values()))),
            "maxboxacc_v2_at_iou": best,
            "maxboxacc_v2_best_threshold": {str(iou): _threshold(thresholds[int(np.argmax(c))])
                                            for iou, c in zip(self.iou_thresholds, curves)},
            "maxboxacc_curve": [round(float(v), 4) for v in curve],
            "maxboxacc_v2_curves": {str(iou): [round(float(v), 4) for v in c]
                                    for iou, c in zip(self.iou_thresholds, curves)},
            "maxboxacc_cam_curve_interval": self.cam_curve_interval,
            "maxboxacc_n_images": n,
            "maxboxacc_n_without_map": self._without_state + int((~self._seen).sum()),
        }


def _threshold(t: float) -> float:
    """A threshold of ``np.arange`` as the short decimal it stands for (0.29000000000000004 -> 0.29)."""
    return round(float(t), 10)
