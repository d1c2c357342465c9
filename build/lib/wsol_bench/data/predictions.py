"""Prediction files: the project's long CSV format and the devkit's task-2 text format.

* Long CSV: one row per guess, columns ``image_id, rank, synset, xmin, ymin, xmax, ymax``
  (``rank`` 1-based, boxes 0-based inclusive in original-image pixels; all four
  coordinates empty: a guess without a box), optional extra columns (``score``...) after
  them.
* Devkit task 2 (``demo.val.pred.det.txt``): line ``i`` is the ``i``-th image of the
  evaluated set in sorted file-name order; ``label xmin ymin xmax ymax`` repeated per
  guess, labels are ILSVRC2012_IDs (1..1000, see :mod:`wsol_bench.data.synsets`).

Readers are strict: a value of the wrong type, a row with the wrong number of fields or
an empty file is an error naming ``file:line``.
"""

from __future__ import annotations

import csv
import gzip
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from wsol_bench.boxes import Box
from wsol_bench.data.synsets import SynsetTable

PREDICTION_COLUMNS = ["image_id", "rank", "synset", "xmin", "ymin", "xmax", "ymax"]
BOX_COLUMNS = ["xmin", "ymin", "xmax", "ymax"]


class Guesses(Protocol):
    """One image's guesses, best first (:class:`wsol_bench.metrics.base.ImageResult` is one)."""

    image_id: str
    synsets: list[str]
    scores: list[float]
    boxes: list[Box]
    gt_known_box: Box | None


def predictions_table(results: Iterable[Guesses]) -> pd.DataFrame:
    """Long format: ``image_id, rank, synset, xmin, ymin, xmax, ymax, score``."""
    rows = [
        (r.image_id, rank, syn, *box, score)
        for r in results
        for rank, (syn, box, score) in enumerate(zip(r.synsets, r.boxes, r.scores), start=1)
    ]
    return pd.DataFrame(rows, columns=[*PREDICTION_COLUMNS, "score"])


def gt_known_table(results: Iterable[Guesses]) -> pd.DataFrame:
    """``image_id, xmin, ymin, xmax, ymax``: the box made for each image's ground-truth class."""
    rows = [(r.image_id, *r.gt_known_box) for r in results if r.gt_known_box is not None]
    return pd.DataFrame(rows, columns=["image_id", *BOX_COLUMNS])


def read_predictions_csv(path: str | Path) -> pd.DataFrame:
    """Read a long-format prediction CSV strictly (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such prediction file")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path}: empty file; expected the header {','.join(PREDICTION_COLUMNS)}")
        header = [h.strip() for h in header]
        if header[: len(PREDICTION_COLUMNS)] != PREDICTION_COLUMNS:
            raise ValueError(f"{path}:1: header {header} does not start with {PREDICTION_COLUMNS}")
        rows: list[list] = []
        for row in reader:
            line = reader.line_num
            if not row or not "".join(row).strip():
                continue
            if len(row) != len(header):
                raise ValueError(f"{path}:{line}: {len(row)} fields, but the header has {len(header)}")
            rank = _integer(row[1], f"{path}:{line}", "rank")
            if rank is None or rank < 1:
                raise ValueError(f"{path}:{line}: rank {row[1]!r} is not a 1-based integer")
            if not row[0].strip() or not row[2].strip():
                raise ValueError(f"{path}:{line}: empty image_id or synset")
            coords = [_integer(v, f"{path}:{line}", c) for v, c in zip(row[3:7], BOX_COLUMNS)]
            if any(c is None for c in coords) and not all(c is None for c in coords):
                raise ValueError(f"{path}:{line}: a box needs all four coordinates (or none, for no box)")
            rows.append([row[0].strip(), rank, row[2].strip(),
                         *(np.nan if c is None else c for c in coords), *row[7:]])
    if not rows:
        raise ValueError(f"{path}: no predictions after the header")
    df = pd.DataFrame(rows, columns=header)
    for extra in header[len(PREDICTION_COLUMNS):]:
        numeric = pd.to_numeric(df[extra], errors="coerce")
        if numeric.notna().sum() == (df[extra].astype(str).str.strip() != "").sum():
            df[extra] = numeric
    return df


def _integer(text: str, where: str, column: str) -> int | None:
    """An integer field (``12`` or ``12.0``); ``None`` for an empty field."""
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{where}: {column} {text!r} is not a number") from None
    if not math.isfinite(value) or value != int(value):
        raise ValueError(f"{where}: {column} {text!r} is not an integer")
    return int(value)


def read_devkit_predictions(
    path: str | Path,
    image_ids: Sequence[str],
    meta: SynsetTable,
    max_guesses: int = 5,
    with_boxes: bool = True,
) -> pd.DataFrame:
    """Read a devkit file (plain or ``.gz``) for ``image_ids`` (sorted file-name order).

    ``with_boxes``: task 2 (``label xmin ymin xmax ymax`` per guess); otherwise task 1
    (labels only, boxes NaN). Guesses beyond ``max_guesses`` are ignored, as in the
    devkit. A line count that differs from the number of images is an error.
    """
    group = 5 if with_boxes else 1
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such prediction file")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if len(lines) != len(image_ids):
        raise ValueError(f"{path}: {len(lines)} prediction lines but {len(image_ids)} images to evaluate")
    rows = []
    for lineno, (image_id, line) in enumerate(zip(image_ids, lines), start=1):
        fields = line.split()
        if len(fields) % group:
            raise ValueError(f"{path}:{lineno}: {len(fields)} fields, not groups of 'label xmin ymin xmax ymax'")
        try:
            values = np.asarray(fields, dtype=np.int64).reshape(-1, group)[:max_guesses]
        except ValueError:
            raise ValueError(f"{path}:{lineno}: non-integer field in {line!r}") from None
        for rank, (label, *box) in enumerate(values, start=1):
            try:
                wnid = meta.wnid(int(label))
            except ValueError as err:
                raise ValueError(f"{path}:{lineno}: {err}") from None
            rows.append((image_id, rank, wnid, *(box or [np.nan] * 4)))
    return pd.DataFrame(rows, columns=PREDICTION_COLUMNS)


def write_devkit_predictions(
    path: str | Path, predictions: pd.DataFrame, image_ids: Sequence[str], meta: SynsetTable
) -> None:
    """Write a devkit task-2 file: one line per image of ``image_ids`` (in that order).

    Guesses without a box are written with the placeholder box ``0 0 0 0``
    (the devkit format has no "no box"); an image without guesses gets an empty line.
    """
    by_image = {k: g.sort_values("rank") for k, g in predictions.groupby("image_id", sort=False)}
    lines = []
    for image_id in image_ids:
        g = by_image.get(image_id)
        parts: list[str] = []
        if g is not None:
            coords = g[BOX_COLUMNS].fillna(0).astype(np.int64).to_numpy()
            for synset, box in zip(g["synset"], coords):
                parts.append(" ".join(str(v) for v in (meta.index(synset), *box)))
        lines.append(" ".join(parts))
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
