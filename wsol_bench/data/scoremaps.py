"""Score maps and metadata in clovaai/wsolevaluation's layout, both ways.

Layout of a score-map folder (``scoremaps/`` of a run, or any method's maps laid out alike):

* ``<image_id>.npy``: the ground-truth class's map as wsolevaluation's ``BoxEvaluator``
  reads it: 224 x 224 float64 in [0, 1], the map stretched to the square by
  ``cv2.INTER_CUBIC`` and min-max normalised (:func:`wsol_bench.metrics.maxboxacc.wsol_scoremap`;
  float64 as their ``CAMComputer`` saves it). ``image_id`` is the image file's name without
  extension (``ILSVRC2012_val_00000001``), not wsolevaluation's own ILSVRC ids
  (``val/ILSVRC2012_val_00000001.JPEG``); their loader reads ``<scoremap_root>/<image_id>.npy``
  for the ids of ``image_ids.txt``, so the folder and its metadata agree.
* ``metadata/``: the files of wsolevaluation's ``data_loaders.py``, one line per image (per
  box for ``localization.txt``), comma-separated, no header, in image order:
  ``image_ids.txt`` (``<image_id>``), ``class_labels.txt`` (``<image_id>,<class>``, the
  sorted-WNID class index of :func:`wsol_bench.data.synsets.default_synsets`),
  ``image_sizes.txt`` (``<image_id>,<width>,<height>`` of the original image) and
  ``localization.txt`` (``<image_id>,<x0>,<y0>,<x1>,<y1>``: the boxes of the image's class in
  original 0-based inclusive pixels, as the ground truth files give them).

With it wsolevaluation itself scores a run: ``configure_metadata("scoremaps/metadata")``
and ``scoremap_root="scoremaps/"``. :func:`evaluate_scoremaps` scores such a folder here.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wsol_bench.boxes import ImageAnnotation, Size
from wsol_bench.data.synsets import SynsetTable, default_synsets
from wsol_bench.files import atomic_write
from wsol_bench.metrics.base import ImageResult, MapSample
from wsol_bench.metrics.maxboxacc import MaxBoxAcc, check_scoremap, wsol_scoremap
from wsol_bench.metrics.pointing_game import TOLERANCE, PointingGame, torchray_resize

METADATA_DIR = "metadata"
METADATA_FILES = ("image_ids.txt", "class_labels.txt", "image_sizes.txt", "localization.txt")


def scoremap_path(directory: str | Path, image_id: str) -> Path:
    """``<directory>/<image_id>.npy``. An id that cannot name a file in ``directory`` (empty,
    a path, hidden) or would corrupt the comma-separated metadata files (a comma, a line
    break) is refused."""
    if not image_id or "/" in image_id or "\\" in image_id or image_id.startswith(".") or "\0" in image_id:
        raise ValueError(f"image id {image_id!r} cannot name a score-map file")
    for characters, what in ((",", "a comma"), ("\n\r", "a line break")):
        if any(c in image_id for c in characters):
            raise ValueError(f"image id {image_id!r}: contains {what}, which would corrupt wsolevaluation's "
                             "comma-separated metadata files (one image per line); rename the image file")
    return Path(directory) / f"{image_id}.npy"


def write_scoremap(directory: str | Path, image_id: str, saliency: np.ndarray) -> Path:
    """Write ``saliency`` (the ground-truth class's map, any frame, e.g. the resized one) as
    ``<directory>/<image_id>.npy`` in wsolevaluation's form (atomically)."""
    buffer = io.BytesIO()
    np.save(buffer, wsol_scoremap(saliency), allow_pickle=False)
    return atomic_write(scoremap_path(directory, image_id), buffer.getvalue(), fsync=False)


def write_sample_scoremap(directory: str | Path, sample: MapSample) -> Path:
    """:func:`write_scoremap` for the ground-truth class's map of an engine sample."""
    saliency = sample.map_of(sample.annotation.label)
    if saliency is None:
        raise ValueError(f"{sample.image_id}: no map of the ground-truth class {sample.annotation.label}")
    return write_scoremap(directory, sample.image_id, saliency)


def read_scoremap(directory: str | Path, image_id: str) -> np.ndarray:
    """``<directory>/<image_id>.npy`` checked as wsolevaluation checks it (2-D 224 x 224, no NaN,
    in [0, 1]), as float64. Never unpickles: an object array is refused. Every error names the
    file: missing, not a ``.npy`` file, an object array, unreadable data, or a map that fails a check."""
    path = scoremap_path(directory, image_id)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no score map for image {image_id}")
    return check_scoremap(_load_npy(path), str(path))


def _load_npy(path: Path) -> np.ndarray:
    """The array of the ``.npy`` file ``path``, read without pickle; ``ValueError`` naming the file otherwise."""
    fmt = np.lib.format
    with path.open("rb") as fh:
        magic = fh.read(len(fmt.MAGIC_PREFIX))
        if magic != fmt.MAGIC_PREFIX:
            what = "empty" if not magic else "a .npz zip archive" if magic.startswith(b"PK") else "no NumPy header"
            raise ValueError(f"{path}: not a .npy file ({what}); a score map is an array saved with numpy.save")
        fh.seek(0)
        try:
            version = fmt.read_magic(fh)
            header = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}.get(version)
            if header is not None:
                _, _, dtype = header(fh)
                if dtype.hasobject:
                    raise ValueError(f"{path}: an object array (dtype {dtype}), refused for safety (reading it "
                                     "would unpickle); a score map is a float array")
            fh.seek(0)
            return fmt.read_array(fh, allow_pickle=False)
        except ValueError as err:
            if str(err).startswith(str(path)):
                raise
            raise ValueError(f"{path}: cannot read the .npy data ({err})") from None
        except (OSError, EOFError) as err:
            raise ValueError(f"{path}: cannot read the .npy data ({type(err).__name__}: {err})") from None


def write_metadata(
    directory: str | Path,
    annotations: Mapping[str, ImageAnnotation],
    original_sizes: Mapping[str, Size] | None = None,
    synsets: SynsetTable | None = None,
) -> Path:
    """Write wsolevaluation's four metadata files for ``annotations`` (in their order) into
    ``<directory>/metadata/``; returns that folder.

    An image's size is ``original_sizes[image_id]`` (``(height, width)``) if given, else the
    annotation's; an image with neither is an error.
    """
    synsets = synsets or default_synsets()
    ids, labels, sizes, boxes = [], [], [], []
    for image_id, ann in annotations.items():
        scoremap_path(directory, image_id)  # a usable file name
        size = (original_sizes or {}).get(image_id) or ann.size
        if size is None:
            raise ValueError(f"{image_id}: the original image size is unknown (give original_sizes)")
        height, width = int(size[0]), int(size[1])
        ids.append(f"{image_id}\n")
        labels.append(f"{image_id},{synsets.index(ann.label)}\n")
        sizes.append(f"{image_id},{width},{height}\n")
        boxes += [f"{image_id},{b.xmin},{b.ymin},{b.xmax},{b.ymax}\n" for b in ann.boxes_of(ann.label)]
    out = Path(directory) / METADATA_DIR
    for name, lines in zip(METADATA_FILES, (ids, labels, sizes, boxes)):
        atomic_write(out / name, "".join(lines), fsync=False)
    return out


@dataclass(frozen=True)
class WsolMetadata:
    """wsolevaluation's metadata: ids in order, class per id, ``(width, height)`` per id,
    boxes ``(x0, y0, x1, y1)`` per id (the orders and conventions of their files)."""

    image_ids: list[str]
    class_labels: dict[str, int]
    image_sizes: dict[str, tuple[int, int]]
    boxes: dict[str, list[tuple[int, int, int, int]]]


def read_metadata(metadata_dir: str | Path) -> WsolMetadata:
    """Read the four files as ``data_loaders.py`` does (``get_image_ids``, ``get_class_labels``,
    ``get_image_sizes``, ``get_bounding_boxes``)."""
    metadata_dir = Path(metadata_dir)

    def rows(name: str, n_fields: int) -> list[list[str]]:
        path = metadata_dir / name
        if not path.is_file():
            raise FileNotFoundError(f"{path}: wsolevaluation metadata file missing")
        out = []
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            fields = line.split(",")
            if len(fields) != n_fields:
                raise ValueError(f"{path}:{number}: expected {n_fields} comma-separated fields, got {line!r}")
            out.append(fields)
        return out

    try:
        labels = {i: int(c) for i, c in rows("class_labels.txt", 2)}
        sizes = {i: (int(w), int(h)) for i, w, h in rows("image_sizes.txt", 3)}
        boxes: dict[str, list[tuple[int, int, int, int]]] = {}
        for i, *coords in rows("localization.txt", 5):
            x0, y0, x1, y1 = (int(v) for v in coords)
            boxes.setdefault(i, []).append((x0, y0, x1, y1))
    except ValueError as err:
        raise ValueError(f"{metadata_dir}: {err}") from None
    return WsolMetadata([r[0] for r in rows("image_ids.txt", 1)], labels, sizes, boxes)


def evaluate_scoremaps(
    directory: str | Path,
    ground_truth: Mapping[str, ImageAnnotation],
    original_sizes: Mapping[str, Size] | None = None,
    cam_curve_interval: float = 0.01,
    iou_thresholds: Sequence[int] = (30, 50, 70),
    tolerance: int = TOLERANCE,
) -> dict[str, Any]:
    """Score the maps ``<directory>/<image_id>.npy`` of the images of ``ground_truth`` with
    MaxBoxAcc, MaxBoxAccV2 and the pointing game; returns the evaluators' ``compute()`` keys.

    Each map must be wsolevaluation's 224 x 224 float score map in [0, 1] (it is used as it
    is, not renormalised, as their ``BoxEvaluator`` does); a missing or invalid one is an
    error. The original ``(height, width)`` of an image, needed to scale its boxes and to play
    the pointing game in original pixels, is taken from ``original_sizes``, else from
    ``<directory>/metadata/image_sizes.txt`` when present, else from the annotation.

    The pointing game here resizes the 224 x 224 map to the original size (aspect ratio
    restored) before taking its maximum, so it can differ from a run's figure, which reads
    the map of the resized frame; MaxBoxAcc equals the run's exactly (same score maps).
    Only the ground-truth class's map is stored, so ``pointing_game_top1`` is ``None``.
    """
    directory = Path(directory)
    meta_sizes: dict[str, tuple[int, int]] = {}
    if (directory / METADATA_DIR / "image_sizes.txt").is_file():
        meta_sizes = read_metadata(directory / METADATA_DIR).image_sizes
    boxes = MaxBoxAcc(cam_curve_interval=cam_curve_interval, iou_thresholds=tuple(iou_thresholds))
    pointing = PointingGame(tolerance=tolerance)
    boxes.start(ground_truth)
    pointing.start(ground_truth)
    for image_id, ann in ground_truth.items():
        size = _original_size(image_id, ann, original_sizes, meta_sizes)
        scoremap = read_scoremap(directory, image_id)
        hit = pointing.hit(torchray_resize(scoremap, size), ann, ann.label)
        states = {boxes.name: boxes.state_from_scoremap(scoremap, ann, size),
                  pointing.name: {"hit": int(hit), "top1_hit": 0}}
        result = [ImageResult(image_id, states=states)]
        boxes.accumulate(result)
        pointing.accumulate(result)
    summary = {**boxes.compute(), **pointing.compute()}
    summary["pointing_game_top1"] = summary["pointing_game_top1_ci95"] = None
    return summary


def _original_size(image_id: str, ann: ImageAnnotation, given: Mapping[str, Size] | None,
                   meta_sizes: Mapping[str, tuple[int, int]]) -> Size:
    if given and image_id in given:
        return int(given[image_id][0]), int(given[image_id][1])
    if image_id in meta_sizes:
        width, height = meta_sizes[image_id]
        return height, width
    if ann.size is not None:
        return ann.size
    raise ValueError(f"{image_id}: the original image size is unknown (no original_sizes entry, no metadata "
                     "image_sizes.txt line, none in the annotation)")


__all__ = [
    "METADATA_DIR", "METADATA_FILES", "WsolMetadata", "evaluate_scoremaps", "read_metadata", "read_scoremap",
    "scoremap_path", "write_metadata", "write_sample_scoremap", "write_scoremap",
]
