"""Resolve a ``dataset`` config into the images and ground truth to evaluate.

Layouts understood for ``dataset.root`` (explicit paths fill what ``root`` lacks; setting
one that ``root`` also provides is an error):

* Kaggle "ImageNet Object Localization Challenge":
  ``ILSVRC/Data/CLS-LOC/val/*.JPEG``, ``ILSVRC/Annotations/CLS-LOC/val/*.xml``,
  ``LOC_val_solution.csv``, ``LOC_synset_mapping.txt``;
* the official devkit downloads unpacked side by side:
  ``ILSVRC2012_img_val/*.JPEG`` (or ``val/*.JPEG``), the boxes of
  ``ILSVRC2012_bbox_val_v3.tgz`` (``val/*.xml``), and ``ILSVRC2012_devkit_t12/data/``
  (``meta.mat``, ``ILSVRC2012_validation_ground_truth.txt``).

Images are evaluated in sorted file-name order; the image id is the file stem. A path given
both explicitly and through ``root`` is an error naming both.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from wsol_bench.data.ground_truth import (
    GroundTruth,
    check_labels,
    read_annotation_dir,
    read_solution_csv,
    select,
)
from wsol_bench.data.images import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, sort_folder
from wsol_bench.data.synsets import (
    SynsetTable,
    default_synsets,
    read_devkit_labels,
    read_devkit_meta,
    read_synset_mapping,
)
from wsol_bench.registry import require

log = logging.getLogger(__name__)

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


PATH_KEYS = ("images", "annotations", "solution_csv", "synset_mapping", "devkit_meta", "devkit_labels", "blacklist")


@dataclass(frozen=True)
class DatasetSpec:
    """Where images and ground truth live, and which images to evaluate (Hydra-free).

    Paths may be relative to the working directory. ``name`` only labels reports, except
    ``demo``: with no path set it means the embedded demo photographs (:func:`wsol_bench.data.demo`).
    """

    name: str = "custom"
    root: str | None = None  # a devkit or Kaggle ILSVRC download; fills the paths below
    images: str | None = None  # folder of images; evaluated in sorted file-name order
    annotations: str | None = None  # folder of per-image ILSVRC XML files
    solution_csv: str | None = None  # Kaggle LOC_val_solution.csv
    synset_mapping: str | None = None  # LOC_synset_mapping.txt (sorted-WNID order, names)
    devkit_meta: str | None = None  # devkit meta.mat (ILSVRC2012_ID order)
    devkit_labels: str | None = None  # ILSVRC2012_validation_ground_truth.txt
    blacklist: str | None = None  # devkit clsloc_validation_blacklist (1-based indices)
    limit: int | None = None  # keep the first N images (sorted file-name order)
    image_ids: tuple[str, ...] | None = None  # keep exactly these image ids
    max_pixels: int | None = DEFAULT_MAX_PIXELS  # larger images are recorded as failed (None: no limit)
    demo_dir: str = "outputs/.demo_images"  # where name=demo copies its photographs (a folder the harness owns)

    def __post_init__(self) -> None:
        require(self.limit is None or self.limit >= 1, "limit", self.limit, "null or >= 1")
        require(self.max_pixels is None or self.max_pixels >= 1, "max_pixels", self.max_pixels, "null or >= 1")
        require(self.image_ids is None or len(self.image_ids) >= 1, "image_ids", self.image_ids,
                "null or a non-empty list")

    @property
    def user_paths(self) -> dict[str, str]:
        """The paths the user set (``root`` included)."""
        return {k: str(getattr(self, k)) for k in ("root", *PATH_KEYS) if getattr(self, k) not in (None, "")}


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
    spec: DatasetSpec = DatasetSpec()

    @property
    def max_pixels(self) -> int | None:
        return self.spec.max_pixels

    @property
    def identity(self) -> dict:
        """What the run's results depend on in the data: the paths, selection and images."""
        return {"paths": self.spec.user_paths, "name": self.spec.name, "max_pixels": self.spec.max_pixels,
                "n_images": len(self.image_ids),
                "image_ids_sha256": hashlib.sha256("\n".join(self.image_ids).encode()).hexdigest()}


def resolve_paths(cfg: DatasetSpec) -> DatasetSpec:
    """Fill the paths of ``cfg`` from ``cfg.root`` (Kaggle or devkit layout).

    A path that ``root`` provides and that is also set explicitly is an error naming both.
    """
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
    both = [k for k in found if getattr(cfg, k) not in (None, "")]
    if both:
        k = both[0]
        raise ValueError(f"dataset.{k}={getattr(cfg, k)} and dataset.root={root} (which provides {found[k]}) "
                         f"both set the {k.replace('_', ' ')}: set one of them")
    return replace(cfg, **found)


def list_images(directory: str | Path) -> dict[str, Path]:
    """Image files of ``directory`` by id (file stem), in sorted file-name order.

    Every file of a suffix Pillow reads (:data:`wsol_bench.data.images.IMAGE_SUFFIXES`, any
    case) is an image; every other entry is skipped, and one warning gives their count and the
    first names with the reason (unknown suffix, no suffix, folder, hidden, not an image).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"dataset.images={directory}: folder not found")
    files, skipped = sort_folder(directory)
    listed = "; ".join(f"{name} ({reason})" for name, reason in skipped[:5]) + ("; ..." if len(skipped) > 5 else "")
    if not files:
        raise ValueError(f"dataset.images={directory}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}, any case)"
                         + (f"; skipped: {listed}" if skipped else ""))
    if skipped:
        log.warning("dataset.images=%s: %d entries skipped, not read as images: %s", directory, len(skipped), listed)
    by_id: dict[str, Path] = {}
    for p in files:
        if p.stem in by_id:
            raise ValueError(f"dataset.images={directory}: {by_id[p.stem].name} and {p.name} have the same "
                             f"image id {p.stem!r}; keep one of them")
        by_id[p.stem] = p
    return by_id


def validation_number(image_id: str) -> int | None:
    """The 1-based validation image number of ``ILSVRC2012_val_00000123`` (123), else None."""
    m = _VAL_NUMBER.search(image_id)
    return int(m.group(1)) if m else None


def load_evaluation_set(cfg: DatasetSpec, need_images: bool = True, lenient: bool = False) -> EvaluationSet:
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
        spec=cfg,
    )


def _select(ids: list[str], cfg: DatasetSpec) -> list[str]:
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
