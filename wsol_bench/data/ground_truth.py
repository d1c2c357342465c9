"""Readers of ILSVRC localisation ground truth, all returning :class:`ImageAnnotation`.

Sources:

* per-image XML files (``ILSVRC2012_bbox_val_v3.tgz``, Kaggle ``Annotations/CLS-LOC/val/``);
* Kaggle's ``LOC_val_solution.csv`` (``ImageId,PredictionString``, boxes repeated as
  ``synset xmin ymin xmax ymax``, trailing space, rows unsorted).

Coordinates are kept as in the files: 0-based inclusive pixels. Every error names the
file (and line, for the CSV); nothing is silently dropped.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from xml.parsers.expat import ExpatError

import xmltodict

from wsol_bench.boxes import Box, ImageAnnotation
from wsol_bench.data.synsets import SynsetTable, default_synsets

GroundTruth = dict[str, ImageAnnotation]
"""Image id -> annotation."""


def parse_annotation_xml(text: str | bytes, source: str, synsets: SynsetTable | None = None) -> ImageAnnotation:
    """Parse one ILSVRC/PASCAL-style annotation XML document.

    ``text``: the document, preferably as the file's bytes (the parser then honours the
    declared encoding, e.g. Latin-1). ``source`` names the file in error messages. ``<object>`` may appear once or many
    times; every box is checked against ``<size>`` and ``synsets`` (default: the 1000
    ILSVRC classes).
    """
    synsets = synsets or default_synsets()
    try:
        doc = xmltodict.parse(text, disable_entities=True, force_list=("object",))
    except (ExpatError, ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{source}: malformed XML ({err})") from err
    ann = doc.get("annotation") if isinstance(doc, dict) else None
    if not isinstance(ann, dict):
        raise ValueError(f"{source}: no <annotation> root element")
    image_id = _text(ann.get("filename"), source, "filename") if ann.get("filename") else Path(source).stem
    image_id = Path(image_id).stem
    size = ann.get("size")
    if not isinstance(size, dict):
        raise ValueError(f"{source}: missing <size>")
    width = _int(size.get("width"), source, "size/width")
    height = _int(size.get("height"), source, "size/height")
    if width <= 0 or height <= 0:
        raise ValueError(f"{source}: <size> {width}x{height} is not a valid image size")
    objects = ann.get("object") or []
    boxes: list[Box] = []
    for n, obj in enumerate(objects, start=1):
        where = f"{source}: object {n}"
        if not isinstance(obj, dict):
            raise ValueError(f"{where}: empty <object>")
        wnid = _text(obj.get("name"), where, "name")
        if wnid not in synsets:
            raise ValueError(f"{where}: unknown synset {wnid!r}")
        bb = obj.get("bndbox")
        if not isinstance(bb, dict):
            raise ValueError(f"{where}: missing <bndbox>")
        x0, y0, x1, y1 = (_int(bb.get(k), where, f"bndbox/{k}") for k in ("xmin", "ymin", "xmax", "ymax"))
        box = Box(x0, y0, x1, y1, wnid)
        box.validate((height, width), where)
        boxes.append(box)
    if not boxes:
        raise ValueError(f"{source}: no <object> boxes: the image has no ground truth")
    return ImageAnnotation(image_id, width, height, tuple(boxes))


def read_annotation_xml(path: str | Path, synsets: SynsetTable | None = None) -> ImageAnnotation:
    """Read one annotation XML file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such annotation file") from None
    return parse_annotation_xml(data, str(path), synsets)


def read_annotation_dir(
    directory: str | Path,
    image_ids: Iterable[str] | None = None,
    synsets: SynsetTable | None = None,
    errors: dict[str, str] | None = None,
) -> GroundTruth:
    """Read ``<image_id>.xml`` for each id (default: every ``*.xml`` in ``directory``).

    A missing or bad file raises, unless ``errors`` is given: then its image id and the
    reason are recorded there and reading goes on (long runs report such images).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: annotation folder not found")
    if image_ids is None:
        paths = sorted(directory.glob("*.xml"))
        if not paths:
            raise ValueError(f"{directory}: no .xml annotation files")
    else:
        paths = [directory / f"{i}.xml" for i in image_ids]
    out: GroundTruth = {}
    for p in paths:
        try:
            if not p.is_file():
                raise FileNotFoundError(f"{p}: no ground truth for image {p.stem} (file missing)")
            out[p.stem] = read_annotation_xml(p, synsets)
        except (FileNotFoundError, ValueError) as err:
            if errors is None:
                raise
            errors[p.stem] = str(err)
    return out


def read_solution_csv(path: str | Path, synsets: SynsetTable | None = None) -> GroundTruth:
    """Read Kaggle's ``LOC_val_solution.csv``; image sizes are unknown there (``None``)."""
    synsets = synsets or default_synsets()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such solution CSV")
    out: GroundTruth = {}
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["ImageId", "PredictionString"]:
            raise ValueError(f"{path}:1: expected header 'ImageId,PredictionString', got {header!r}")
        for row in reader:
            lineno = reader.line_num
            if not row or not "".join(row).strip():
                continue
            if len(row) != 2:
                raise ValueError(f"{path}:{lineno}: expected 2 columns, got {len(row)}")
            image_id, preds = row[0].strip(), row[1].split()
            if image_id in out:
                raise ValueError(f"{path}:{lineno}: duplicate image id {image_id}")
            if not preds:
                raise ValueError(f"{path}:{lineno}: image {image_id} has no boxes")
            if len(preds) % 5:
                raise ValueError(
                    f"{path}:{lineno}: PredictionString has {len(preds)} fields, not a multiple of 5"
                )
            boxes = []
            for j in range(0, len(preds), 5):
                where = f"{path}:{lineno}"
                wnid = preds[j]
                if wnid not in synsets:
                    raise ValueError(f"{where}: unknown synset {wnid!r}")
                x0, y0, x1, y1 = (_int(v, where, "coordinate") for v in preds[j + 1 : j + 5])
                box = Box(x0, y0, x1, y1, wnid)
                box.validate(None, where)
                boxes.append(box)
            out[image_id] = ImageAnnotation(image_id, None, None, tuple(boxes))
    return out


def select(ground_truth: Mapping[str, ImageAnnotation], image_ids: Sequence[str], source: str) -> GroundTruth:
    """The annotations of ``image_ids``, in that order; an id without ground truth is an error."""
    missing = [i for i in image_ids if i not in ground_truth]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise KeyError(f"{source}: no ground truth for {len(missing)} image(s): {shown}")
    return {i: ground_truth[i] for i in image_ids}


def check_labels(ground_truth: Mapping[str, ImageAnnotation], labels: Mapping[str, str], source: str) -> None:
    """Check that each image's boxes carry the class given by a label file (devkit labels)."""
    for image_id, ann in ground_truth.items():
        want = labels.get(image_id)
        if want is not None and want not in ann.synsets:
            raise ValueError(
                f"{source}: image {image_id} is labelled {want} but its boxes are {list(ann.synsets)}"
            )


def _text(value: object, where: str, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: missing or empty <{key}>")
    return value.strip()


def _int(value: object, where: str, key: str) -> int:
    if not isinstance(value, str):
        raise ValueError(f"{where}: missing <{key}>")
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{where}: <{key}> is {value!r}, not a number") from None
