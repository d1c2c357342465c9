"""Class index orders.

Two orders of the 1000 ILSVRC classes exist and they do **not** agree:

* sorted-WNID order (``LOC_synset_mapping.txt``): index 0 is ``n01440764``; the order
  of torchvision's and timm's ImageNet models and of this project's model outputs;
* the devkit's ILSVRC2012_ID order (``meta.mat``): ID 1 is ``n02119789`` (kit fox);
  the order of the devkit's label files and task-2 submissions.

Everything inside the project speaks WNIDs; these tables convert at the edges.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

NUM_CLASSES = 1000


@dataclass(frozen=True)
class SynsetTable:
    """An ordered list of WNIDs: position ``i`` is class ``i + offset``.

    ``offset`` is 0 for sorted-WNID model indices and 1 for devkit ILSVRC2012_IDs.
    """

    wnids: tuple[str, ...]
    names: tuple[str, ...]
    offset: int = 0
    source: str = "<memory>"
    _positions: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_positions", {w: i for i, w in enumerate(self.wnids)})
        if len(self._positions) != len(self.wnids):
            raise ValueError(f"{self.source}: duplicate WNIDs in the class list")

    def __len__(self) -> int:
        return len(self.wnids)

    def __contains__(self, wnid: object) -> bool:
        return wnid in self._positions

    def index(self, wnid: str) -> int:
        """Class number of ``wnid`` in this order (0-based or 1-based by ``offset``)."""
        try:
            return self._positions[wnid] + self.offset
        except KeyError:
            raise KeyError(f"{self.source}: unknown synset {wnid!r}") from None

    def wnid(self, number: int) -> str:
        """WNID of class number ``number`` in this order."""
        i = int(number) - self.offset
        if not 0 <= i < len(self.wnids):
            lo, hi = self.offset, len(self.wnids) - 1 + self.offset
            raise ValueError(f"{self.source}: class number {number} is outside {lo}..{hi}")
        return self.wnids[i]

    def name(self, wnid: str) -> str:
        """Human-readable name (first lemma) of ``wnid``."""
        return self.names[self._positions[wnid]].split(",")[0].strip()


@functools.cache
def default_synsets() -> SynsetTable:
    """Sorted-WNID table shipped with timm (offline), identical to ``LOC_synset_mapping.txt``."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    wnids = tuple(info.label_names())
    names = tuple(info.label_descriptions(detailed=False))
    return SynsetTable(wnids, names, offset=0, source="timm ImageNetInfo")


def read_synset_mapping(path: str | Path) -> SynsetTable:
    """Read ``LOC_synset_mapping.txt`` (``WNID name, name, ...`` per line) in sorted-WNID order."""
    path = Path(path)
    wnids: list[str] = []
    names: list[str] = []
    for lineno, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        wnid, _, name = line.strip().partition(" ")
        if not (wnid.startswith("n") and wnid[1:].isdigit()):
            raise ValueError(f"{path}:{lineno}: {wnid!r} is not a WordNet id (nNNNNNNNN)")
        wnids.append(wnid)
        names.append(name or wnid)
    if wnids != sorted(wnids):
        raise ValueError(f"{path}: WNIDs are not in sorted order, so lines are not model class indices")
    return SynsetTable(tuple(wnids), tuple(names), offset=0, source=str(path))


def read_devkit_meta(path: str | Path) -> SynsetTable:
    """Read the devkit's ``meta.mat``: the 1000 leaf synsets in ILSVRC2012_ID order (1-based)."""
    import scipy.io

    path = Path(path)
    try:
        mat = scipy.io.loadmat(str(path), squeeze_me=True, struct_as_record=False)
        synsets = mat["synsets"]
    except Exception as err:  # scipy raises several kinds for bad files
        raise ValueError(f"{path}: not a devkit meta.mat with a 'synsets' table ({err})") from err
    by_id = {
        int(s.ILSVRC2012_ID): (str(s.WNID), str(s.words))
        for s in synsets
        if 1 <= int(s.ILSVRC2012_ID) <= NUM_CLASSES
    }
    if sorted(by_id) != list(range(1, NUM_CLASSES + 1)):
        raise ValueError(f"{path}: expected ILSVRC2012_IDs 1..{NUM_CLASSES}, found {len(by_id)}")
    wnids = tuple(by_id[i][0] for i in range(1, NUM_CLASSES + 1))
    names = tuple(by_id[i][1] for i in range(1, NUM_CLASSES + 1))
    return SynsetTable(wnids, names, offset=1, source=str(path))


def read_devkit_labels(path: str | Path, meta: SynsetTable) -> list[str]:
    """Read ``ILSVRC2012_validation_ground_truth.txt``: line i is the ILSVRC2012_ID of image i.

    Returns the WNIDs, in file order (validation image 1 first).
    """
    path = Path(path)
    labels: list[str] = []
    for lineno, line in enumerate(_read_lines(path), start=1):
        text = line.strip()
        if not text:
            continue
        try:
            number = int(text)
        except ValueError:
            raise ValueError(f"{path}:{lineno}: label {text!r} is not an integer") from None
        if not 1 <= number <= NUM_CLASSES:
            raise ValueError(f"{path}:{lineno}: label {number} is outside 1..{NUM_CLASSES}")
        labels.append(meta.wnid(number))
    return labels


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return path.read_text(encoding="utf-8").splitlines()
