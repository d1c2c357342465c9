"""Score maps and metadata in clovaai/wsolevaluation's layout, both ways.

Layout of a score-map folder (``scoremaps/`` of a run, or any method's maps laid out alike):

* ``<image_id>.npy``: the ground-truth class's map as wsolevaluation's ``BoxEvaluator``
  reads it: 224 x 224 float64 in [0, 1], the map stretched to the square by
  ``cv2.INTER_CUBIC`` and min-max normalised (:func:`wsol_bench.frames.wsol_scoremap`;
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
and ``scoremap_root="scoremaps/"``. :func:`wsol_bench.metrics.scoring.score_maps` scores such a
folder here.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wsol_bench.boxes import ImageAnnotation, Size
from wsol_bench.data.synsets import SynsetTable, default_synsets
from wsol_bench.files import atomic_write
from wsol_bench.frames import check_scoremap, wsol_scoremap

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


__all__ = [
    "METADATA_DIR", "METADATA_FILES", "WsolMetadata", "read_metadata", "read_scoremap", "scoremap_path",
    "write_metadata", "write_scoremap",
]
