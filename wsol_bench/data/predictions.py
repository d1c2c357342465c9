"""Prediction files: the project's long CSV format and the devkit's task-2 text format.

* Long CSV: one row per guess, columns ``image_id, rank, synset, xmin, ymin, xmax, ymax``
  (``rank`` 1-based, boxes 0-based inclusive in original-image pixels), optional extra
  columns (``score``...) after them.
* Devkit task 2 (``demo.val.pred.det.txt``): line ``i`` is the ``i``-th image of the
  evaluated set in sorted file-name order; ``label xmin ymin xmax ymax`` repeated per
  guess, labels are ILSVRC2012_IDs (1..1000, see :mod:`wsol_bench.data.synsets`).
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from wsol_bench.data.synsets import SynsetTable
from wsol_bench.metrics.localisation import BOX_COLUMNS, PREDICTION_COLUMNS


def read_predictions_csv(path: str | Path) -> pd.DataFrame:
    """Read a long-format prediction CSV, checking its columns."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such prediction file")
    df = pd.read_csv(path, dtype={"image_id": str, "synset": str})
    missing = [c for c in PREDICTION_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}; expected {PREDICTION_COLUMNS} first")
    if df["rank"].isna().any() or (df["rank"] < 1).any():
        raise ValueError(f"{path}: column 'rank' must hold 1-based integers")
    df["rank"] = df["rank"].astype(int)
    return df


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
