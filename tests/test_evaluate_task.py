"""``task=evaluate`` end to end through the Hydra CLI."""

from __future__ import annotations

import json

import pandas as pd

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
