"""``task=evaluate`` end to end through the Hydra CLI."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.helpers import run_cli
from tests.test_ground_truth import write_xml


def test_evaluate_csv_predictions_against_xml(tmp_path):
    ann = tmp_path / "ann"
    ann.mkdir()
    write_xml(ann, "img_a", [("n01440764", 0, 0, 49, 49)])
    write_xml(ann, "img_b", [("n01443537", 10, 10, 59, 59)])
    preds = pd.DataFrame(
        [("img_a", 1, "n01440764", 0, 0, 49, 49), ("img_b", 1, "n01440764", 10, 10, 59, 59),
         ("img_b", 2, "n01443537", 10, 10, 59, 59)],
        columns=["image_id", "rank", "synset", "xmin", "ymin", "xmax", "ymax"],
    )
    pred_path = tmp_path / "pred.csv"
    preds.to_csv(pred_path, index=False)
    out = tmp_path / "run"
    res = run_cli("task=evaluate", f"evaluate.predictions={pred_path}", f"dataset.annotations={ann}",
                  f"hydra.run.dir={out}")
    assert res.returncode == 0, res.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_images"] == 2
    assert metrics["loc_error_at_k"] == [0.5, 0.0, 0.0, 0.0, 0.0]
    assert metrics["cls_error_at_k"] == [0.5, 0.0, 0.0, 0.0, 0.0]
    assert len(pd.read_csv(out / "per_image.csv")) == 2
    assert "loc error" in res.stdout


def test_evaluate_devkit_line_count_mismatch(tmp_path, shared_sample):
    pred = tmp_path / "pred.txt"
    pred.write_text("1 0 0 10 10\n" * 3)
    res = run_cli("task=evaluate", f"evaluate.predictions={pred}", "evaluate.format=devkit",
                  f"dataset.annotations={shared_sample / 'xml'}",
                  f"dataset.devkit_meta={shared_sample / 'devkit' / 'meta.mat'}", "dataset.limit=5",
                  f"hydra.run.dir={tmp_path / 'run'}")
    assert res.returncode != 0
    assert "pred.txt: 3 prediction lines but 5 images to evaluate" in res.stdout


def _two_image_truth(tmp_path):
    ann = tmp_path / "ann"
    ann.mkdir()
    for name in ("img_a", "img_b", "img_c", "img_d"):
        write_xml(ann, name, [("n01440764", 0, 0, 49, 49)])
    pred_path = tmp_path / "pred.csv"
    pd.DataFrame([("img_a", 1, "n01440764", 0, 0, 49, 49)],
                 columns=["image_id", "rank", "synset", "xmin", "ymin", "xmax", "ymax"]).to_csv(pred_path, index=False)
    return ann, pred_path


def test_images_without_predictions_error_count_as_wrong_or_are_skipped(tmp_path):
    ann, pred = _two_image_truth(tmp_path)
    common = ("task=evaluate", f"evaluate.predictions={pred}", f"dataset.annotations={ann}")
    res = run_cli(*common, f"hydra.run.dir={tmp_path / 'error'}")
    assert res.returncode != 0
    assert "3 of the 4 evaluated images have no guess (first: img_b, img_c, img_d)" in res.stdout
    assert "evaluate.missing=wrong" in res.stdout
    res = run_cli(*common, "evaluate.missing=wrong", f"hydra.run.dir={tmp_path / 'wrong'}")
    assert res.returncode == 0, res.stdout
    wrong = json.loads((tmp_path / "wrong" / "metrics.json").read_text())
    assert (wrong["n_images"], wrong["n_missing"], wrong["loc_error_at_k"][0]) == (4, 3, 0.75)
    res = run_cli(*common, "evaluate.missing=skip", f"hydra.run.dir={tmp_path / 'skip'}")
    assert res.returncode == 0, res.stdout
    skip = json.loads((tmp_path / "skip" / "metrics.json").read_text())
    assert (skip["n_images"], skip["n_missing"], skip["missing"], skip["loc_error_at_k"][0]) == (1, 3, "skip", 0.0)
    assert "scored 1 of 4" in res.stdout


def test_image_of_another_size_than_its_xml_is_an_error(tmp_path):
    from PIL import Image

    ann, pred = _two_image_truth(tmp_path)
    images = tmp_path / "images"
    images.mkdir()
    for name in ("img_a", "img_b", "img_c", "img_d"):
        Image.new("RGB", (100, 80)).save(images / f"{name}.png")
    Image.new("RGB", (50, 40)).save(images / "img_c.png")  # a half-size copy
    res = run_cli("task=evaluate", f"evaluate.predictions={pred}", f"dataset.annotations={ann}",
                  f"dataset.images={images}", "evaluate.missing=wrong", f"hydra.run.dir={tmp_path / 'run'}")
    assert res.returncode != 0
    assert "img_c.png: the image is 50x40 but its ground truth records 100x80" in res.stdout


@pytest.mark.parametrize("rows, message", [
    ("img_a,1.7,n01440764,0,0,49,49", "pred.csv:2: rank '1.7' is not an integer"),
    ("img_a,one,n01440764,0,0,49,49", "pred.csv:2: rank 'one' is not a number"),
    ("img_a,1,n01440764,4x1,0,49,49", "pred.csv:2: xmin '4x1' is not a number"),
    ("img_a,1,n01440764,0,0,49,49,extra", "pred.csv:2: 8 fields, but the header has 7"),
    ("img_a,1,n01440764,0,,49,49", "pred.csv:2: a box needs all four coordinates"),
    ("img_a,0,n01440764,0,0,49,49", "pred.csv:2: rank '0' is not a 1-based integer"),
    ("", "pred.csv: no predictions after the header"),
])
def test_prediction_csv_is_parsed_strictly_with_file_and_line(tmp_path, rows, message):
    from wsol_bench.data.predictions import read_predictions_csv

    path = tmp_path / "pred.csv"
    path.write_text("image_id,rank,synset,xmin,ymin,xmax,ymax\n" + rows + ("\n" if rows else ""))
    with pytest.raises(ValueError) as err:
        read_predictions_csv(path)
    assert message in str(err.value)
    path.write_text("")
    with pytest.raises(ValueError, match="pred.csv: empty file"):
        read_predictions_csv(path)


def test_prediction_csv_keeps_boxless_guesses_and_extra_columns(tmp_path):
    from wsol_bench.data.predictions import read_predictions_csv

    path = tmp_path / "pred.csv"
    path.write_text("image_id,rank,synset,xmin,ymin,xmax,ymax,score\n"
                    "img_a,1,n01440764,0,0,49.0,49,0.5\nimg_a,2,n01443537,,,,,0.25\n")
    df = read_predictions_csv(path)
    assert df["rank"].tolist() == [1, 2] and df["xmax"].iloc[0] == 49 and pd.isna(df["xmin"].iloc[1])
    assert df["score"].tolist() == [0.5, 0.25]
