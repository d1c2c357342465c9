"""The localisation run end to end through the CLI: demo, bad inputs, cached sweeps."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import REPO, make_odd_images, run_cli, write_xml

pytestmark = pytest.mark.slow  # every test runs the CLI in a subprocess
FAST = ("tta.resize=64", "tta.crop=56", "run.progress=false", "run.processes=1")  # rank0_* = all


def test_demo_two_images(tmp_path):
    out = tmp_path / "run"
    res = run_cli("dataset.limit=2", f"hydra.run.dir={out}", f"engine.cache_dir={tmp_path / 'cache'}",
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
    assert len(list((out / "figures").glob("*.png"))) == 6  # and boxes + mask, and the paper's two figures
    assert (out / "figures" / "paper_figure2.png").is_file() and (out / "figures" / "paper_figure3.png").is_file()
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
                  "segmentation=threshold", f"hydra.run.dir={out}", "engine.cache=false", *FAST)
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
                  f"engine.cache_dir={tmp_path / 'cache'}", *FAST)
    assert res.returncode == 0, res.stdout[-3000:]
    first, second = (json.loads((sweep / str(j) / "metrics.json").read_text()) for j in (0, 1))
    assert first["rank0_cache_misses"] == 2 and first["rank0_cache_hits"] == 0
    assert second["rank0_cache_hits"] == 2 and second["rank0_cache_misses"] == 0  # no saliency recomputed
    res = run_cli("task=sweep_report", f"sweep.dir={sweep}", f"hydra.run.dir={tmp_path / 'report'}")
    assert res.returncode == 0, res.stdout[-3000:]
    table = pd.read_csv(sweep / "sweep.csv")
    assert table["segmentation.fg_quantile"].tolist() == [0.9, 0.95]
    assert table["status"].tolist() == ["ok", "ok"] and (sweep / "sweep.png").is_file()


def _snapshot(folder: Path) -> dict:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.iterdir())}


def test_a_folder_of_the_users_images_is_read_not_written(tmp_path, shared_sample):
    import shutil

    images = tmp_path / "my_images"
    images.mkdir()
    for n in (1, 2):
        shutil.copy(shared_sample / "images" / f"ILSVRC2012_val_{n:08d}.JPEG", images)
    before = _snapshot(images)
    out = tmp_path / "run"
    res = run_cli(f"dataset.images={images}", f"dataset.solution_csv={shared_sample / 'LOC_val_solution.csv'}",
                  "tta.crops=1", "engine.cache=false", "run.progress=false", f"hydra.run.dir={out}",
                  "segmentation=center")
    assert res.returncode == 0, res.stdout[-3000:]
    assert _snapshot(images) == before  # nothing added, nothing changed
    assert json.loads((out / "metrics.json").read_text())["n_images"] == 2
    assert pd.read_csv(out / "per_image.csv").image_id.tolist() == [f"ILSVRC2012_val_0000000{i}" for i in (1, 2)]


def test_dataset_root_fills_the_paths_under_the_default_dataset(tmp_path):
    from tests.helpers import kaggle_tree

    kaggle_tree(tmp_path / "root")
    out = tmp_path / "run"
    res = run_cli(f"dataset.root={tmp_path / 'root'}", "dataset.limit=2", "segmentation=full_image",
                  "engine.cache=false", *FAST, f"hydra.run.dir={out}")
    assert res.returncode == 0, res.stdout[-3000:]
    assert pd.read_csv(out / "per_image.csv").image_id.tolist() == [f"ILSVRC2012_val_0000000{i}" for i in (1, 2)]
    res = run_cli(f"dataset.root={tmp_path / 'root'}", f"dataset.images={tmp_path}", *FAST,
                  f"hydra.run.dir={tmp_path / 'both'}")
    assert res.returncode != 0 and "both set the images" in res.stdout


def test_size_mismatch_and_oversized_images_are_recorded_not_fatal(tmp_path):
    from PIL import Image

    images, ann = odd_dataset(tmp_path)
    write_xml(ann, "cmyk", [("n01440764", 5, 5, 40, 30)], w=120, h=80)  # the file is 60x40: another frame
    Image.new("RGB", (100, 100)).save(images / "big.png")
    write_xml(ann, "big", [("n01440764", 5, 5, 40, 30)], w=100, h=100)
    out = tmp_path / "run"
    res = run_cli(f"dataset.images={images}", f"dataset.annotations={ann}", "dataset.max_pixels=5000",
                  "segmentation=threshold", f"hydra.run.dir={out}", "engine.cache=false", *FAST)
    assert res.returncode == 0, res.stdout[-3000:]
    per_image = pd.read_csv(out / "per_image.csv").set_index("image_id")
    assert per_image.loc["cmyk", "status"] == "size_mismatch"
    assert "decoded image is 60x40 but its ground truth records 120x80" in per_image.loc["cmyk", "error"]
    # 100 x 100 pixels > 5000: recorded as failed, counted as an error, the run goes on
    assert per_image.loc["big", "status"] == "failed"
    assert "exceeds the limit of 5000 (dataset.max_pixels)" in per_image.loc["big", "error"]
    assert per_image.loc["png_named_jpeg", "status"] == "ok"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_size_mismatch"] == 1 and metrics["n_failed"] == 2  # big and truncated
    assert metrics["n_images"] == 3  # scored: big, truncated, png_named_jpeg


def test_runs_from_any_directory_with_its_own_name(tmp_path):
    cwd = tmp_path / "somewhere"
    cwd.mkdir()
    res = run_cli("dataset.limit=1", "tta.crops=1", "segmentation=center", "run.progress=false",
                  "run.figures=0", cwd=cwd)
    assert res.returncode == 0, res.stdout[-3000:]
    assert sorted(p.name for p in cwd.iterdir()) == ["outputs"]  # no data/ folder: the demo goes under outputs
    [run] = list((cwd / "outputs" / "localise").iterdir())
    assert (run / "wsol_bench.log").is_file() and (run / "metrics.json").is_file()
    assert len(list((cwd / "outputs" / ".demo_images").iterdir())) == 6
    help_text = run_cli("--help", cwd=cwd).stdout
    assert help_text.startswith("wsol_bench: a reference harness") and "Powered by Hydra" in help_text
    assert "__main__" not in help_text


def test_any_timm_architecture_with_a_weights_file(tmp_path, shared_sample):
    import timm
    import torch

    weights = tmp_path / "resnet18.pth"
    torch.manual_seed(0)
    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), weights)
    out = tmp_path / "run"
    res = run_cli("model=timm", "model.arch=resnet18", f"model.weights={weights}", "dataset=shared_sample",
                  "dataset.limit=2", "tta.crops=1", "engine.cache=false", "run.progress=false",
                  f"hydra.run.dir={out}", cwd=REPO)
    assert res.returncode == 0, res.stdout[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "timm:resnet18" and metrics["n_images"] == 2


def test_task_figures_redraws_a_run_without_computing_saliency(tmp_path, monkeypatch):
    from hydra import compose, initialize_config_dir

    import wsol_bench.models
    import wsol_bench.saliency.gradient
    from wsol_bench.config import register_configs
    from wsol_bench.tasks import figures as runner

    out, cache = tmp_path / "run", tmp_path / "cache"
    res = run_cli("dataset.limit=2", "tta.crops=1", f"engine.cache_dir={cache}", "run.progress=false",
                  "run.figures=2", f"hydra.run.dir={out}")
    assert res.returncode == 0, res.stdout[-3000:]
    drawn = {p.name: p.read_bytes() for p in (out / "figures").glob("*.png")}
    assert {"paper_figure2.png", "paper_figure3.png", "00000_demo_camera.png", "00001_demo_chelsea.png"} <= set(drawn)
    assert "![paper_figure3](figures/paper_figure3.png)" in (out / "report.md").read_text()
    for p in (out / "figures").glob("*.png"):
        p.unlink()

    def refuse(*args, **kwargs):
        raise AssertionError("task=figures must not build a model or compute saliency")

    monkeypatch.setattr(wsol_bench.models, "build_classifier", refuse)
    monkeypatch.setattr(wsol_bench.saliency.gradient.Gradient, "forward", refuse)
    monkeypatch.chdir(REPO)  # the run's demo images are found as the run found them
    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["task=figures", f"run_dir={out}", "run.figures=2"])
    assert runner.run(cfg) == len(drawn)
    assert {p.name: p.read_bytes() for p in (out / "figures").glob("*.png")} == drawn  # the same figures

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["task=figures", f"runs=[{out},{out}]", "run.figures=2"])
    monkeypatch.chdir(tmp_path)
    assert runner.run(cfg) == 1
    from PIL import Image

    with Image.open(tmp_path / "outputs" / "figures" / "comparison.png") as im:
        assert im.size[0] > im.size[1] > 100  # 2 rows of 3 panels


def test_saved_score_maps_are_scored_by_task_evaluate_as_by_the_run(tmp_path):
    out = tmp_path / "run"
    res = run_cli("dataset.limit=3", "tta.crops=1", "engine.cache=false", "run.progress=false", "run.figures=0",
                  "run.save_maps=true", f"hydra.run.dir={out}")
    assert res.returncode == 0, res.stdout[-3000:]
    maps = sorted(p.name for p in (out / "scoremaps").glob("*.npy"))
    assert maps == ["demo_camera.npy", "demo_chelsea.npy", "demo_china.npy"]
    import numpy as np

    first = np.load(out / "scoremaps" / maps[0])
    assert first.shape == (224, 224) and 0 <= first.min() and first.max() <= 1
    assert (out / "scoremaps" / "metadata" / "image_sizes.txt").read_text().splitlines()[0] == "demo_camera,512,512"
    res = run_cli("task=evaluate", "evaluate.format=scoremaps", f"evaluate.predictions={out / 'scoremaps'}",
                  f"dataset.annotations={REPO / 'data' / 'demo' / 'annotations'}",
                  "dataset.image_ids=[demo_camera,demo_chelsea,demo_china]", f"hydra.run.dir={tmp_path / 'eval'}")
    assert res.returncode == 0, res.stdout[-3000:]
    run, scored = (json.loads((d / "metrics.json").read_text()) for d in (out, tmp_path / "eval"))
    assert scored["maxboxacc_v2"] == run["maxboxacc_v2"] and scored["maxboxacc"] == run["maxboxacc"]
    res = run_cli("task=evaluate", "evaluate.format=scoremaps", f"evaluate.predictions={out / 'scoremaps'}",
                  f"dataset.annotations={REPO / 'data' / 'demo' / 'annotations'}",
                  "dataset.image_ids=[demo_camera,demo_chelsea,demo_china]", "evaluation.metrics=[maxboxacc]",
                  "evaluation.maxboxacc.iou_thresholds=[50]", f"hydra.run.dir={tmp_path / 'eval50'}")
    assert res.returncode == 0, res.stdout[-3000:]
    at_50 = json.loads((tmp_path / "eval50" / "metrics.json").read_text())
    assert list(at_50["maxboxacc_v2_at_iou"]) == ["50"] and "pointing_game" not in at_50  # evaluation.* applies
    assert at_50["maxboxacc_v2"] == run["maxboxacc_v2_at_iou"]["50"]


def test_shared_sample_and_task_figures_work_from_any_directory(tmp_path, shared_sample):
    """dataset=shared_sample is found from any directory, the run stores absolute paths, and
    task=figures redraws it from yet another directory."""
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    env = {"WSOL_BENCH_SHARED": str(shared_sample.parent)}
    out = tmp_path / "run"
    res = run_cli("dataset=shared_sample", "dataset.limit=1", *FAST, "tta.crops=1", f"hydra.run.dir={out}",
                  cwd=first, env=env)
    assert res.returncode == 0, res.stdout[-3000:]
    saved = (out / ".hydra" / "config.yaml").read_text()
    assert f"images: {shared_sample / 'images'}" in saved and f"cache_dir: {first}" in saved
    res = run_cli("task=figures", f"run_dir={out}", f"hydra.run.dir={tmp_path / 'figs'}", cwd=second)
    assert res.returncode == 0, res.stdout[-3000:]
    assert "paper_figure2.png" in {p.name for p in (out / "figures").iterdir()}
