"""``task=evaluate`` end to end through the Hydra CLI."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.helpers import run_cli, write_xml


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


# --- labels-only files and the devkit's two tasks ---------------------------------------------------


def _devkit_run(tmp_path, shared_sample, lines: list[str], fmt: str):
    pred = tmp_path / "pred.txt"
    pred.write_text("".join(lines))
    out = tmp_path / "run"
    res = run_cli("task=evaluate", f"evaluate.predictions={pred}", f"evaluate.format={fmt}",
                  f"dataset.annotations={shared_sample / 'xml'}",
                  f"dataset.devkit_meta={shared_sample / 'devkit' / 'meta.mat'}", f"dataset.limit={len(lines)}",
                  f"hydra.run.dir={out}")
    assert res.returncode == 0, res.stdout
    return res.stdout, json.loads((out / "metrics.json").read_text())


def test_devkit_cls_labels_only_file_prints_and_stores_no_localisation_error(tmp_path, shared_sample):
    with (shared_sample / "devkit" / "demo.val.pred.txt").open() as fh:
        lines = [next(fh) for _ in range(5)]  # the devkit's task-1 demo file: labels only
    stdout, metrics = _devkit_run(tmp_path, shared_sample, lines, "devkit_cls")
    assert "cls error" in stdout and "loc error" not in stdout
    assert "labels only" in stdout
    assert metrics["loc_error_at_k"] is None and metrics["loc_error_ci95"] is None
    assert metrics["gt_known_loc_error"] is None and metrics["labels_only"] is True
    assert len(metrics["cls_error_at_k"]) == 5 and metrics["n_images"] == 5


def test_devkit_task2_table_says_where_its_classification_row_comes_from(tmp_path, shared_sample):
    import gzip

    with gzip.open(shared_sample / "devkit" / "demo.val.pred.det.txt.gz", "rt") as fh:
        lines = [next(fh) for _ in range(5)]
    stdout, metrics = _devkit_run(tmp_path, shared_sample, lines, "devkit")
    table = stdout[stdout.index("loc error"):].splitlines()
    assert table[1].startswith("cls error")
    assert table[2].startswith("note: cls error") and "task-2" in table[2] and "task-1" in table[2]
    assert "devkit_cls" in table[2]
    assert len(metrics["loc_error_at_k"]) == 5 and "labels_only" not in metrics


def test_a_csv_without_any_box_is_scored_as_labels_only(tmp_path):
    ann = tmp_path / "ann"
    ann.mkdir()
    write_xml(ann, "img_a", [("n01440764", 0, 0, 49, 49)])
    write_xml(ann, "img_b", [("n01443537", 10, 10, 59, 59)])
    pred = tmp_path / "pred.csv"
    pred.write_text("image_id,rank,synset,xmin,ymin,xmax,ymax\nimg_a,1,n01440764,,,,\nimg_b,1,n01440764,,,,\n"
                    "img_b,2,n01443537,,,,\n")
    out = tmp_path / "run"
    res = run_cli("task=evaluate", f"evaluate.predictions={pred}", f"dataset.annotations={ann}",
                  f"hydra.run.dir={out}")
    assert res.returncode == 0, res.stdout
    assert "loc error" not in res.stdout and "note:" not in res.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["cls_error_at_k"] == [0.5, 0.0, 0.0, 0.0, 0.0] and metrics["loc_error_at_k"] is None


def test_format_metrics_rows():
    from wsol_bench.reports.metrics_file import format_metrics, without_localisation

    summary = {"n_images": 4, "loc_error_at_k": [1.0, 0.5], "cls_error_at_k": [0.5, 0.25], "gt_known_loc_error": 0.5,
               "loc_error_ci95": [[0, 1], [0, 1]], "gt_known_loc_error_ci95": [0, 1]}
    text = format_metrics(summary)
    assert "loc error        1.0000  0.5000" in text and "GT-known loc error: 0.5000" in text
    assert "note" not in text
    labels = without_localisation(summary)
    assert labels["labels_only"] is True and summary["loc_error_at_k"] == [1.0, 0.5]  # a copy
    text = format_metrics(labels)
    assert "loc error" not in text and "cls error        0.5000  0.2500" in text
    assert "note: cls error" in format_metrics(summary, prediction_format="devkit").splitlines()[-1]
