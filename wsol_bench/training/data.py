"""ImageNet-style class-folder data sets for training: ``<root>/<wnid>/*.JPEG``.

Conventions:

* class index = position of the folder's WNID in a *sorted* class list: the list given
  (a synset table / ``LOC_synset_mapping.txt``, e.g. all 1000 ILSVRC classes, so that a
  model trained on a subset still speaks 1000-way sorted-WNID indices), or else the
  sorted folder names themselves;
* images are yielded as normalised float tensors (``(x - mean) / std`` of RGB in [0, 1]),
  with the label as an ``int``;
* files are listed once, in sorted order, so the data set is identical on every rank.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms

from wsol_bench.data.images import IMAGE_SUFFIXES

# Where the class folders sit inside a download, tried in order under dataset.root.
TRAIN_LAYOUTS = ("train", "ILSVRC/Data/CLS-LOC/train", "Data/CLS-LOC/train")


def find_train_dir(root: str | Path) -> Path:
    """The folder holding ``<wnid>/`` sub-folders under ``root``.

    ``root`` may be that folder itself, a devkit-style download (``root/train/``) or a
    Kaggle download (``root/ILSVRC/Data/CLS-LOC/train/``).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such directory")
    for candidate in (*(root / rel for rel in TRAIN_LAYOUTS), root):
        if candidate.is_dir() and _class_dirs(candidate):
            return candidate
    tried = ", ".join(str(root / rel) for rel in TRAIN_LAYOUTS)
    raise FileNotFoundError(f"{root}: no class folders (<wnid>/) here or under {tried}")


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


class ClassFolderDataset(Dataset):
    """``<root>/<class>/<image>`` files with sorted-class-list labels.

    ``classes``: the full class list (any order; it is sorted); every folder must be in
    it. ``None``: the sorted folder names. ``transform`` maps a PIL RGB image to a tensor.
    """

    def __init__(
        self,
        root: str | Path,
        classes: Sequence[str] | None = None,
        transform: Callable[[Image.Image], torch.Tensor] | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: no such directory")
        folders = _class_dirs(self.root)
        if not folders:
            raise FileNotFoundError(f"{self.root}: no class folders")
        names = [f.name for f in folders]
        self.classes: list[str] = sorted(classes) if classes is not None else names
        if len(set(self.classes)) != len(self.classes):
            raise ValueError("duplicate classes in the class list")
        index = {c: i for i, c in enumerate(self.classes)}
        unknown = [n for n in names if n not in index]
        if unknown:
            raise ValueError(f"{self.root}: folders not in the class list: {unknown[:5]}"
                             f"{' ...' if len(unknown) > 5 else ''}")
        self.samples: list[tuple[Path, int]] = [
            (path, index[folder.name])
            for folder in folders
            for path in sorted(folder.iterdir())
            if path.suffix.lower() in IMAGE_SUFFIXES
        ]
        if not self.samples:
            raise FileNotFoundError(f"{self.root}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[i]
        with Image.open(path) as im:
            image = im.convert("RGB")
        return (self.transform(image) if self.transform else transforms.functional.to_tensor(image)), label


def train_transform(crop: int, mean: Sequence[float], std: Sequence[float]) -> transforms.Compose:
    """Standard ImageNet training augmentation: random-resized crop, horizontal flip, normalise."""
    return transforms.Compose([
        transforms.RandomResizedCrop(crop),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(list(mean), list(std)),
    ])


def eval_transform(crop: int, mean: Sequence[float], std: Sequence[float]) -> transforms.Compose:
    """Validation preprocessing: shorter side to ``crop * 256 / 224``, centre crop, normalise."""
    return transforms.Compose([
        transforms.Resize(round(crop * 256 / 224)),
        transforms.CenterCrop(crop),
        transforms.ToTensor(),
        transforms.Normalize(list(mean), list(std)),
    ])


def class_list_for(train_dir: str | Path, num_classes: int, synsets: Sequence[str] | None = None) -> list[str]:
    """The sorted class list that defines label indices for a training run.

    ``synsets`` given: that list. Else, with ``num_classes == 1000`` and every folder an
    ILSVRC-1k WNID: the 1000 sorted WNIDs (timm's table, offline), so outputs keep the
    sorted-WNID order the rest of the project assumes. Else the sorted folder names.
    Raises if the list is longer than ``num_classes``.
    """
    folders = [p.name for p in _class_dirs(Path(train_dir))]
    if synsets is not None:
        classes = sorted(synsets)
    else:
        classes = folders
        if num_classes == 1000:
            from wsol_bench.data.synsets import default_synsets

            table = default_synsets()
            if all(f in table for f in folders):
                classes = list(table.wnids)
    if len(classes) > num_classes:
        raise ValueError(f"{len(classes)} classes but the model has num_classes={num_classes}")
    return sorted(classes)
