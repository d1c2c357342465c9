"""Prediction tables, from a CSV file or in memory, are checked alike and strictly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from wsol_bench.data.predictions import (
    PREDICTION_COLUMNS,
    check_predictions_frame,
    read_predictions_csv,
)
from wsol_bench.data.synsets import SynsetTable

HEADER = "image_id,rank,synset,xmin,ymin,xmax,ymax\n"


def test_class_names_instead_of_wnids_are_refused_with_the_wnid_of_the_name(tmp_path):
    path = tmp_path / "pred.csv"
    path.write_text(HEADER + "img_a,1,n02123045,0,0,9,9\nimg_a,2,tabby,0,0,9,9\n")
    with pytest.raises(ValueError) as err:
        read_predictions_csv(path)
    message = str(err.value)
    assert "pred.csv:3: synset 'tabby' is not a WNID (WNIDs look like n02123045)" in message
    assert "'tabby' is n02123045 in" in message
    path.write_text(HEADER + "img_a,1,no such class,0,0,9,9\n")
    with pytest.raises(ValueError, match=r"pred.csv:2: synset 'no such class' is not a WNID \(WNIDs look like "
                                         r"n02123045\); .*no class of that name"):
        read_predictions_csv(path)


def test_the_hint_uses_the_given_synset_table(tmp_path):
    table = SynsetTable(("n00000001", "n00000002"), ("kit fox, Vulpes macrotis", "crane"), source="mapping.txt")
    frame = pd.DataFrame([("img_a", 1, "Kit Fox", 0, 0, 9, 9)], columns=PREDICTION_COLUMNS)
    with pytest.raises(ValueError, match=r"'Kit Fox' is n00000001 in mapping.txt"):
        check_predictions_frame(frame, synsets=table)


def good_frame() -> pd.DataFrame:
    return pd.DataFrame([("img_a", 1, "n01440764", 0, 0, 49, 49), ("img_a", 2, "n01443537", np.nan, np.nan,
                                                                      np.nan, np.nan),
                         ("img_b", 1, "n01443537", 10.0, 10, 59, 59)], columns=PREDICTION_COLUMNS)


def test_a_good_frame_is_returned_normalised():
    frame = good_frame().assign(score=[0.5, 0.25, 0.125])
    checked = check_predictions_frame(frame)
    assert checked["rank"].dtype == np.int64 and checked["rank"].tolist() == [1, 2, 1]
    assert checked["xmin"].tolist()[::2] == [0, 10] and pd.isna(checked["xmin"].iloc[1])
    assert checked["score"].tolist() == [0.5, 0.25, 0.125]
    assert list(checked.columns) == [*PREDICTION_COLUMNS, "score"]
    boxed = check_predictions_frame(frame.iloc[[0, 2]])
    assert boxed["xmax"].dtype == np.int64
    assert frame["xmin"].iloc[2] == 10.0  # the input is not modified


@pytest.mark.parametrize("column, value, message", [
    ("rank", 1.7, "predictions, row 1 (image_id 'img_a'): rank 1.7 is not an integer"),
    ("rank", 0, "predictions, row 1 (image_id 'img_a'): rank 0 is not a 1-based integer"),
    ("rank", "2", "predictions, row 1 (image_id 'img_a'): rank '2' is not a number"),
    ("rank", np.nan, "predictions, row 1 (image_id 'img_a'): rank nan is not an integer"),
    ("rank", True, "predictions, row 1 (image_id 'img_a'): rank True is not a number"),
    ("xmin", "4", "predictions, row 1 (image_id 'img_a'): xmin '4' is not a number"),
    ("xmin", 4.5, "predictions, row 1 (image_id 'img_a'): xmin 4.5 is not an integer"),
    ("xmin", np.inf, "predictions, row 1 (image_id 'img_a'): xmin inf is not an integer"),
    ("ymax", np.nan, "predictions, row 1 (image_id 'img_a'): a box needs all four coordinates (or none"),
    ("ymax", None, "predictions, row 1 (image_id 'img_a'): a box needs all four coordinates (or none"),
    ("synset", "tabby", "predictions, row 1 (image_id 'img_a'): synset 'tabby' is not a WNID"),
    ("synset", 281, "predictions, row 1 (image_id 'img_a'): synset 281 is not a WNID"),
    ("image_id", "", "predictions, row 1: image_id '' is not a non-empty string"),
    ("image_id", 7, "predictions, row 1: image_id 7 is not a non-empty string"),
])
def test_frame_values_are_checked_like_the_csv_parser_with_the_row(column, value, message):
    frame = good_frame().astype(object)
    if column in ("xmin", "ymin", "xmax", "ymax"):
        frame.loc[1, ["xmin", "ymin", "xmax", "ymax"]] = [0, 0, 9, 9]
    frame.loc[1, column] = value
    with pytest.raises(ValueError) as err:
        check_predictions_frame(frame)
    assert message in str(err.value)


def test_frame_columns_duplicates_and_emptiness():
    with pytest.raises(ValueError, match=r"mine: missing column\(s\) rank, xmax; a prediction table has image_id, "
                                         r"rank, synset, xmin, ymin, xmax, ymax"):
        check_predictions_frame(good_frame().drop(columns=["rank", "xmax"]), source="mine")
    with pytest.raises(ValueError, match="predictions: no predictions"):
        check_predictions_frame(good_frame().iloc[:0])
    twice = pd.concat([good_frame(), good_frame().iloc[[2]]], ignore_index=True)
    with pytest.raises(ValueError, match=r"predictions, row 3 \(image_id 'img_b'\): a second guess of rank 1 "
                                         r"for img_b \(first: row 2\)"):
        check_predictions_frame(twice)
    with pytest.raises(TypeError, match="DataFrame"):
        check_predictions_frame([("img_a", 1, "n01440764", 0, 0, 1, 1)])


def test_csv_duplicate_rank_names_the_line(tmp_path):
    path = tmp_path / "pred.csv"
    path.write_text(HEADER + "img_a,1,n01440764,0,0,9,9\nimg_a,1,n01443537,0,0,9,9\n")
    with pytest.raises(ValueError, match=r"pred.csv:3: a second guess of rank 1 for img_a \(first: line 2\)"):
        read_predictions_csv(path)
