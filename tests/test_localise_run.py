"""The localisation run end to end through the CLI: demo, bad inputs, cached sweeps."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from tests.helpers import run_cli
from tests.test_ground_truth import write_xml
from tests.test_images_and_sources import make_odd_images

FAST = ("saliency.resize=64", "saliency.crop=56", "run.progress=false", "run.processes=1")  # rank0_* = all


def test_demo_two_images(tmp_path):
    out = tmp_path / "run"
    res = run_cli("dataset.limit=2", f"hydra.run.dir={out}", f"saliency.cache_dir={tmp_path / 'cache'}",
                  "run.progress=false", "run.figures=2")
    assert res.returncode == 0, res.stdout[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_images"] == 2 and len(metrics["loc_error_at_k"]) == 5
    assert metrics["gt_known_loc_error"] is not None and metrics["n_failed"] == 0
    predictions = pd.read_csv(out / "predictions.csv")
    assert predictions.columns[:7].tolist() == ["image_id", "rank", "synset", "xmin", "ymin", "xmax", "ymax"]
    assert predictions.groupby("image_id").size().tolist() == [5, 5]
    for name in ("per_image.csv", "per_class.csv", "report.md"):
        assert (out / name).is_file(), name
    assert len(list((out / "figures").glob("*_saliency.png"))) == 2  # maps of the top-5 classes
    assert len(list((out / "figures").glob("*.png"))) == 4  # and boxes + mask
    assert "46.4" in res.stdout or "0.464" in res.stdout  # the paper's row is printed beside the run


def odd_dataset(tmp_path: Path) -> tuple[Path, Path]:
    images = tmp_path / "images"
    paths = make_odd_images(images)
    ann = tmp_path / "ann"
    ann.mkdir()
    for kind in paths:
        write_xml(ann, kind, [("n01440764", 5, 5, 40, 30)], w=60, h=40)
    (ann / "grey.xml").write_text("<annotation><size>")  # malformed
    (ann / "rgb.xml").unlink()  # missing
    return images, ann


def test_bad_images_and_annotations_are_reported_and_the_rest_scored(tmp_path):
    images, ann = odd_dataset(tmp_path)
    out = tmp_path / "run"
    res = run_cli(f"dataset.images={images}", f"dataset.annotations={ann}",
                  "segmentation=threshold", f"hydra.run.dir={out}", "saliency.cache=false", *FAST)
    assert res.returncode == 0, res.stdout[-3000:]
    per_image = pd.read_csv(out / "per_image.csv").set_index("image_id")
    assert per_image.loc["truncated", "status"] == "failed"
    assert "truncated.JPEG: cannot decode" in per_image.loc["truncated", "error"]
    assert per_image.loc["grey", "status"] == "no_ground_truth" and "malformed XML" in per_image.loc["grey", "error"]
    assert per_image.loc["rgb", "status"] == "no_ground_truth" and "file missing" in per_image.loc["rgb", "error"]
    assert (per_image.loc[["cmyk", "png_named_jpeg"], "status"] == "ok").all()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_images"] == 3 and metrics["n_failed"] == 1 and metrics["n_unscored"] == 2
    scored = pd.read_csv(out / "predictions.csv")
    assert sorted(scored.image_id.unique()) == ["cmyk", "png_named_jpeg"]


def test_sweep_reads_the_cache_and_collects_a_table(tmp_path):
    images, ann = odd_dataset(tmp_path)
    sweep = tmp_path / "sweep"
    res = run_cli("-m", f"dataset.images={images}", f"dataset.annotations={ann}",
                  "segmentation.fg_quantile=0.9,0.95", f"hydra.sweep.dir={sweep}",
                  f"saliency.cache_dir={tmp_path / 'cache'}", *FAST)
    assert res.returncode == 0, res.stdout[-3000:]
    first, second = (json.loads((sweep / str(j) / "metrics.json").read_text()) for j in (0, 1))
    assert first["rank0_cache_misses"] == 2 and first["rank0_cache_hits"] == 0
    assert second["rank0_cache_hits"] == 2 and second["rank0_cache_misses"] == 0  # no saliency recomputed
    res = run_cli("task=sweep_report", f"sweep.dir={sweep}", f"hydra.run.dir={tmp_path / 'report'}")
    assert res.returncode == 0, res.stdout[-3000:]
    table = pd.read_csv(sweep / "sweep.csv")
    assert table["segmentation.fg_quantile"].tolist() == [0.9, 0.95]
    assert table["status"].tolist() == ["ok", "ok"] and (sweep / "sweep.png").is_file()
