"""Resolve a ``dataset`` config into the images and ground truth to evaluate.

Layouts understood for ``dataset.root`` (paths given explicitly win):

* Kaggle "ImageNet Object Localization Challenge":
  ``ILSVRC/Data/CLS-LOC/val/*.JPEG``, ``ILSVRC/Annotations/CLS-LOC/val/*.xml``,
  ``LOC_val_solution.csv``, ``LOC_synset_mapping.txt``;
* the official devkit downloads unpacked side by side:
  ``ILSVRC2012_img_val/*.JPEG`` (or ``val/*.JPEG``), the boxes of
  ``ILSVRC2012_bbox_val_v3.tgz`` (``val/*.xml``), and ``ILSVRC2012_devkit_t12/data/``
  (``meta.mat``, ``ILSVRC2012_validation_ground_truth.txt``).

Images are evaluated in sorted file-name order; the image id is the file stem.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from wsol_bench.config import DatasetConfig
from wsol_bench.data.ground_truth import (
    GroundTruth,
    check_labels,
    read_annotation_dir,
    read_solution_csv,
    select,
)
from wsol_bench.data.synsets import (
    SynsetTable,
    default_synsets,
    read_devkit_labels,
    read_devkit_meta,
    read_synset_mapping,
)

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}
_KAGGLE = {
    "images": "ILSVRC/Data/CLS-LOC/val",
    "annotations": "ILSVRC/Annotations/CLS-LOC/val",
    "solution_csv": "LOC_val_solution.csv",
    "synset_mapping": "LOC_synset_mapping.txt",
}
_DEVKIT = {
    "images": ("ILSVRC2012_img_val", "val"),
    "annotations": ("val", "ILSVRC2012_bbox_val"),
    "devkit_meta": "ILSVRC2012_devkit_t12/data/meta.mat",
    "devkit_labels": "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt",
    "blacklist": "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_blacklist.txt",
}
_VAL_NUMBER = re.compile(r"_(\d{8})$")


@dataclass(frozen=True)
class EvaluationSet:
    """The images to evaluate, in sorted file-name order, with their ground truth."""

    image_ids: list[str]
    ground_truth: GroundTruth  # same order as image_ids
    image_paths: dict[str, Path]  # empty when only prediction files are scored
    synsets: SynsetTable  # sorted-WNID order (model outputs)
    devkit_meta: SynsetTable | None  # ILSVRC2012_ID order, when meta.mat is known
    source: str  # where the ground truth came from, for messages and reports
    unscored: dict[str, str] = field(default_factory=dict)  # image id -> why its ground truth is unusable


def resolve_paths(cfg: DatasetConfig) -> DatasetConfig:
    """Fill the unset paths of ``cfg`` from ``cfg.root`` (Kaggle or devkit layout)."""
    if not cfg.root:
        return cfg
    root = Path(cfg.root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset.root={root}: folder not found")
    found: dict[str, str] = {}
    if (root / _KAGGLE["images"]).is_dir() or (root / _KAGGLE["solution_csv"]).is_file():
        for key, rel in _KAGGLE.items():
            if (root / rel).exists():
                found[key] = str(root / rel)
    else:
        for key, rels in _DEVKIT.items():
            for rel in (rels,) if isinstance(rels, str) else rels:
                p = root / rel
                if p.exists() and not (key == "annotations" and not any(p.glob("*.xml"))):
                    found[key] = str(p)
                    break
    if "images" not in found and not cfg.images:
        raise FileNotFoundError(
            f"dataset.root={root}: found neither the Kaggle layout ({_KAGGLE['images']}) "
            f"nor the devkit layout ({' or '.join(_DEVKIT['images'])}/)"
        )
    return replace(cfg, **{k: v for k, v in found.items() if getattr(cfg, k) in (None, "")})


def list_images(directory: str | Path) -> dict[str, Path]:
    """Image files of ``directory`` by id (file stem), in sorted file-name order."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"dataset.images={directory}: folder not found")
    files = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ValueError(f"dataset.images={directory}: no .JPEG/.jpg/.png files")
    return {p.stem: p for p in files}


def validation_number(image_id: str) -> int | None:
    """The 1-based validation image number of ``ILSVRC2012_val_00000123`` (123), else None."""
    m = _VAL_NUMBER.search(image_id)
    return int(m.group(1)) if m else None


def load_evaluation_set(cfg: DatasetConfig, need_images: bool = True, lenient: bool = False) -> EvaluationSet:
    """Images (if ``need_images``) and ground truth selected by ``cfg``.

    ``lenient`` (long runs): an image whose XML file is missing or malformed is not an
    error but goes to ``unscored`` with the reason, out of the evaluated set. An image
    missing from a solution CSV is always an error.
    """
    cfg = resolve_paths(cfg)
    synsets = read_synset_mapping(cfg.synset_mapping) if cfg.synset_mapping else default_synsets()
    meta = read_devkit_meta(cfg.devkit_meta) if cfg.devkit_meta else None

    paths: dict[str, Path] = {}
    if need_images:
        if not cfg.images:
            raise ValueError("dataset.images (or dataset.root) must name the folder of images to evaluate")
        paths = list_images(cfg.images)

    if cfg.solution_csv:
        source = cfg.solution_csv
        csv_gt = read_solution_csv(cfg.solution_csv, synsets)
        candidates = list(paths) if paths else sorted(csv_gt)
    elif cfg.annotations:
        source = cfg.annotations
        csv_gt = None
        if not Path(cfg.annotations).is_dir():
            raise FileNotFoundError(f"dataset.annotations={cfg.annotations}: folder not found")
        candidates = list(paths) if paths else sorted(p.stem for p in Path(cfg.annotations).glob("*.xml"))
    else:
        raise ValueError("no ground truth: set dataset.solution_csv or dataset.annotations (or dataset.root)")

    ids = _select(candidates, cfg)
    unscored: dict[str, str] = {}
    if csv_gt is not None:
        ground_truth = select(csv_gt, ids, source)
    else:
        ground_truth = read_annotation_dir(cfg.annotations, ids, synsets, errors=unscored if lenient else None)
        ids = [i for i in ids if i not in unscored]
        if not ids:
            raise ValueError(f"{source}: none of the selected images has usable ground truth")

    if cfg.devkit_labels:
        if meta is None:
            raise ValueError("dataset.devkit_labels needs dataset.devkit_meta (meta.mat) to map its IDs")
        labels = read_devkit_labels(cfg.devkit_labels, meta)
        by_id = {i: labels[n - 1] for i in ids if (n := validation_number(i)) and n <= len(labels)}
        check_labels(ground_truth, by_id, cfg.devkit_labels)

    return EvaluationSet(
        image_ids=ids,
        ground_truth=ground_truth,
        image_paths={i: paths[i] for i in ids} if paths else {},
        synsets=synsets,
        devkit_meta=meta,
        source=str(source),
        unscored=unscored,
    )


def _select(ids: list[str], cfg: DatasetConfig) -> list[str]:
    """Apply ``image_ids``, the blacklist and ``limit`` (in that order) to sorted ids."""
    if cfg.image_ids:
        wanted = set(cfg.image_ids)
        unknown = wanted.difference(ids)
        if unknown:
            raise KeyError(f"dataset.image_ids: {sorted(unknown)[:5]} not among the {len(ids)} images")
        ids = [i for i in ids if i in wanted]
    if cfg.blacklist:
        ids = _drop_blacklisted(ids, Path(cfg.blacklist))
    if cfg.limit is not None:
        ids = ids[: cfg.limit]
    if not ids:
        raise ValueError("the dataset selection is empty (check dataset.limit / dataset.image_ids)")
    return ids


def _drop_blacklisted(ids: list[str], path: Path) -> list[str]:
    """Remove images whose 1-based validation number is listed in the devkit blacklist file."""
    if not path.is_file():
        raise FileNotFoundError(f"dataset.blacklist={path}: no such file")
    numbers: set[int] = set()
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                numbers.add(int(line))
            except ValueError:
                raise ValueError(f"{path}:{lineno}: {line!r} is not an image index") from None
    kept = [i for i in ids if validation_number(i) not in numbers]
    log.info("blacklist %s removed %d of %d images", path, len(ids) - len(kept), len(ids))
    return kept
