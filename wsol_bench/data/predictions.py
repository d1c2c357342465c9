"""Prediction files: the project's long CSV format and the devkit's task-2 text format.

* Long CSV: one row per guess, columns ``image_id, rank, synset, xmin, ymin, xmax, ymax``
  (``rank`` 1-based, boxes 0-based inclusive in original-image pixels; all four
  coordinates empty: a guess without a box), optional extra columns (``score``...) after
  them.
* Devkit task 2 (``demo.val.pred.det.txt``): line ``i`` is the ``i``-th image of the
  evaluated set in sorted file-name order; ``label xmin ymin xmax ymax`` repeated per
  guess, labels are ILSVRC2012_IDs (1..1000, see :mod:`wsol_bench.data.synsets`).

Readers are strict: a value of the wrong type, a row with the wrong number of fields, a
synset that is not a WNID (``n02123045``, not the class name ``tabby``), two guesses of one
rank for an image, or an empty file is an error naming ``file:line``.
:func:`check_predictions_frame` applies the same rules to a table in memory, naming the row.
"""

from __future__ import annotations

import csv
import gzip
import math
import numbers
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from wsol_bench.boxes import Box
from wsol_bench.data.synsets import SynsetTable, default_synsets

PREDICTION_COLUMNS = ["image_id", "rank", "synset", "xmin", "ymin", "xmax", "ymax"]
BOX_COLUMNS = ["xmin", "ymin", "xmax", "ymax"]
_WNID = re.compile(r"n\d{8}")


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


def read_predictions_csv(path: str | Path, synsets: SynsetTable | None = None) -> pd.DataFrame:
    """Read a long-format prediction CSV strictly (see the module docstring), checked by
    :func:`check_predictions_frame`'s rules with errors naming ``file:line``. ``synsets``: the
    table whose class names an error's hint looks up (default: the sorted-WNID table)."""
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
        lines: list[int] = []
        for row in reader:
            line = reader.line_num
            if not row or not "".join(row).strip():
                continue
            if len(row) != len(header):
                raise ValueError(f"{path}:{line}: {len(row)} fields, but the header has {len(header)}")
            rank = _integer(row[1], f"{path}:{line}", "rank")
            if rank is None or rank < 1:
                raise ValueError(f"{path}:{line}: rank {row[1]!r} is not a 1-based integer")
            coords = [_integer(v, f"{path}:{line}", c) for v, c in zip(row[3:7], BOX_COLUMNS)]
            rows.append([row[0], rank, row[2], *(np.nan if c is None else c for c in coords), *row[7:]])
            lines.append(line)
    if not rows:
        raise ValueError(f"{path}: no predictions after the header")
    df = pd.DataFrame(rows, columns=header)
    df = _check_frame(df, str(path), lambda i: f"{path}:{lines[i]}", lambda i: f"line {lines[i]}", synsets)
    for extra in header[len(PREDICTION_COLUMNS):]:
        numeric = pd.to_numeric(df[extra], errors="coerce")
        if numeric.notna().sum() == (df[extra].astype(str).str.strip() != "").sum():
            df[extra] = numeric
    return df


def check_predictions_frame(
    df: pd.DataFrame, source: str = "predictions", synsets: SynsetTable | None = None
) -> pd.DataFrame:
    """A long-format prediction table in memory, checked as strictly as :func:`read_predictions_csv`.

    Required columns :data:`PREDICTION_COLUMNS` (in any order, extra columns kept after them);
    ``image_id`` a non-empty string; ``rank`` a 1-based integer (``2`` or ``2.0``, not ``1.7``,
    ``"2"``, NaN or ``True``); ``synset`` a WNID string (``n02123045``); the coordinates
    integers (0-based inclusive pixels), or all four missing (NaN / None: a guess without a
    box), never strings or NaN in only some; one guess per image and rank. Errors name
    ``source`` and the row (its index label). Returns a normalised copy: strings stripped,
    ``rank`` int64, each coordinate column int64 (float64 with NaN where some box is missing).
    ``synsets``: the table whose class names an error's hint looks up (default: sorted WNIDs).
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{source}: expected a pandas DataFrame with columns {', '.join(PREDICTION_COLUMNS)}, "
                        f"got {type(df).__name__}")

    def where(i: int) -> str:
        image_id = df["image_id"].iloc[i] if "image_id" in df.columns else None
        known = f" (image_id {image_id!r})" if isinstance(image_id, str) and image_id.strip() else ""
        return f"{source}, row {df.index[i]!r}{known}"

    return _check_frame(df, source, where, lambda i: f"row {df.index[i]!r}", synsets)


def _check_frame(
    df: pd.DataFrame, source: str, where: Callable[[int], str], short: Callable[[int], str],
    synsets: SynsetTable | None,
) -> pd.DataFrame:
    """:func:`check_predictions_frame`'s rules; ``where(i)`` / ``short(i)`` name the ``i``-th row in errors."""
    missing = [c for c in PREDICTION_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{source}: missing column(s) {', '.join(missing)}; a prediction table has "
                         f"{', '.join(PREDICTION_COLUMNS)}")
    if df.columns.duplicated().any():
        raise ValueError(f"{source}: repeated column(s) {', '.join(map(str, df.columns[df.columns.duplicated()]))}")
    if df.empty:
        raise ValueError(f"{source}: no predictions")
    out = df[[*PREDICTION_COLUMNS, *(c for c in df.columns if c not in PREDICTION_COLUMNS)]].copy()
    for column in ("image_id", "synset"):
        values = out[column].to_numpy(dtype=object)
        for i, v in enumerate(values):
            if column == "image_id" and not (isinstance(v, str) and v.strip()):
                raise ValueError(f"{where(i)}: image_id {_show(v)} is not a non-empty string")
            if column == "synset" and not (isinstance(v, str) and _WNID.fullmatch(v.strip())):
                raise ValueError(f"{where(i)}: synset {_show(v)} is not a WNID (WNIDs look like n02123045)"
                                 f"{_wnid_hint(v, synsets)}")
        out[column] = [v.strip() for v in values]
    rank, _ = _whole_numbers(out["rank"], "rank", where, allow_missing=False)
    bad = np.flatnonzero(rank < 1)
    if bad.size:
        raise ValueError(f"{where(bad[0])}: rank {_show(out['rank'].iloc[bad[0]])} is not a 1-based integer")
    out["rank"] = rank.astype(np.int64)
    coords = {c: _whole_numbers(out[c], c, where, allow_missing=True) for c in BOX_COLUMNS}
    n_missing = np.sum([m for _, m in coords.values()], axis=0)
    bad = np.flatnonzero((n_missing > 0) & (n_missing < len(BOX_COLUMNS)))
    if bad.size:
        raise ValueError(f"{where(bad[0])}: a box needs all four coordinates (or none, for no box)")
    for c, (values, gone) in coords.items():
        out[c] = values if gone.any() else values.astype(np.int64)
    repeated = out.duplicated(["image_id", "rank"]).to_numpy()
    if repeated.any():
        i = int(np.flatnonzero(repeated)[0])
        image_id, r = out["image_id"].iloc[i], int(out["rank"].iloc[i])
        first = int(np.flatnonzero((out["image_id"] == image_id).to_numpy() & (out["rank"] == r).to_numpy())[0])
        raise ValueError(f"{where(i)}: a second guess of rank {r} for {image_id} (first: {short(first)})")
    return out


def _whole_numbers(
    column: pd.Series, name: str, where: Callable[[int], str], allow_missing: bool
) -> tuple[np.ndarray, np.ndarray]:
    """``column`` as float64 whole numbers and its missing mask (NaN / None, when ``allow_missing``)."""
    values = column.to_numpy(dtype=object) if column.dtype.kind not in "iuf" else column.to_numpy()
    if values.dtype == object:
        for i, v in enumerate(values):
            if allow_missing and _is_missing(v):
                continue
            if not isinstance(v, numbers.Real) or isinstance(v, (bool, np.bool_)):
                raise ValueError(f"{where(i)}: {name} {_show(v)} is not a number")
        values = np.array([np.nan if _is_missing(v) else float(v) for v in values], dtype=np.float64)
    values = values.astype(np.float64)
    gone = np.isnan(values) if allow_missing else np.zeros(len(values), dtype=bool)
    with np.errstate(invalid="ignore"):
        bad = np.flatnonzero(~gone & ~(np.isfinite(values) & (values == np.round(values))))
    if bad.size:
        raise ValueError(f"{where(bad[0])}: {name} {_show(column.iloc[bad[0]])} is not an integer")
    return values, gone


def _is_missing(value: Any) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value))


def _show(value: Any) -> str:
    """``value`` for a message: numbers plainly (``1.7``, ``nan``, ``3``), anything else as its repr."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return repr(float(value))
    return repr(value)


def _wnid_hint(value: Any, synsets: SynsetTable | None) -> str:
    """For a class name given as a synset: its WNID(s) in ``synsets`` (default: sorted WNIDs), if any."""
    if not isinstance(value, str) or not value.strip():
        return ""
    table = synsets if synsets is not None else default_synsets()
    key = value.strip().lower()
    found = [w for w, names in zip(table.wnids, table.names) if key in (n.strip().lower() for n in names.split(","))]
    if found:
        return f"; {value.strip()!r} is {' or '.join(found)} in {table.source}"
    return f"; {table.source} has no class of that name"


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
    devkit. Line *i* belongs to the *i*-th image; a file of the whole validation set (more
    lines than images, e.g. with ``dataset.limit``) is read by each image's validation number
    (``ILSVRC2012_val_00000123`` is line 123). Any other line count is an error.
    """
    from wsol_bench.data.sources import validation_number

    group = 5 if with_boxes else 1
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such prediction file")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    numbers = list(range(1, len(image_ids) + 1))
    if len(lines) != len(image_ids):
        by_number = [validation_number(i) for i in image_ids]
        if len(lines) < len(image_ids) or None in by_number or max(n for n in by_number if n) > len(lines):
            raise ValueError(f"{path}: {len(lines)} prediction lines but {len(image_ids)} images to evaluate (a file "
                             "of the whole validation set is read by validation number, for ILSVRC2012_val_* ids)")
        numbers = [int(n) for n in by_number if n]
    rows = []
    for lineno, image_id in zip(numbers, image_ids):
        line = lines[lineno - 1]
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
