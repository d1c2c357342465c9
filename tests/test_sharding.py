"""torchrun sharding and resume: identical per-image results, nothing computed twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import REPO, run_cli
from tests.test_images_and_sources import make_odd_images
from tests.test_ground_truth import write_xml

pytestmark = pytest.mark.slow
N_IMAGES = 6  # one batch each


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> tuple[Path, Path]:
    """Six small images (five readable, one truncated) with XML ground truth."""
    root = tmp_path_factory.mktemp("shard_data")
    images = root / "images"
    make_odd_images(images)
    (images / "copy.JPEG").write_bytes((images / "rgb.JPEG").read_bytes())
    assert len(list(images.iterdir())) == N_IMAGES
    ann = root / "ann"
    ann.mkdir()
    for p in images.iterdir():
        write_xml(ann, p.stem, [("n01440764", 5, 5, 40, 30)], w=60, h=40)
    return images, ann


def overrides(images: Path, ann: Path, out: Path, *extra: str) -> list[str]:
    return [f"dataset.images={images}", f"dataset.annotations={ann}", "dataset.prepare_demo=false",
            "dataset.num_workers=0", "saliency.resize=64", "saliency.crop=56", "saliency.batch_images=1",
            "saliency.cache=false", "run.progress=false", "run.figures=0", f"hydra.run.dir={out}", *extra]


def table(out: Path) -> pd.DataFrame:
    per_image = pd.read_csv(out / "per_image.csv")
    predictions = pd.read_csv(out / "predictions.csv")
    drop = [c for c in per_image.columns if c.startswith("seconds_")]
    return per_image.drop(columns=drop).merge(predictions, on="image_id", how="left")


def test_two_processes_equal_one(tmp_path, small_set):
    images, ann = small_set
    one = tmp_path / "one"
    res = run_cli(*overrides(images, ann, one))
    assert res.returncode == 0, res.stdout[-3000:]
    two = tmp_path / "two"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29531",
           "-m", "wsol_bench", *overrides(images, ann, two)]
    res = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:]
    assert json.loads((two / "metrics.json").read_text())["world_size"] == 2
    pd.testing.assert_frame_equal(table(one), table(two))
    m1, m2 = (json.loads((d / "metrics.json").read_text()) for d in (one, two))
    assert m1["loc_error_at_k"] == m2["loc_error_at_k"] and m1["gt_known_loc_error"] == m2["gt_known_loc_error"]


def test_killed_run_resumes_without_recomputing(tmp_path, small_set):
    images, ann = small_set
    whole = tmp_path / "whole"
    assert run_cli(*overrides(images, ann, whole)).returncode == 0

    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "wsol_bench", *overrides(images, ann, out)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while len(list((out / "records").glob("part-*.jsonl"))) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(list((out / "records").glob("part-*.jsonl")))
    assert 2 <= done_before < N_IMAGES, "the run should have been killed part-way"
    assert not (out / "metrics.json").exists()

    res = run_cli(*overrides(images, ann, out, "run.resume=true"))
    assert res.returncode == 0, res.stdout[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["rank0_batches_skipped"] == done_before
    assert metrics["rank0_batches_done"] + done_before == N_IMAGES  # no image computed twice
    pd.testing.assert_frame_equal(table(whole), table(out))


def test_corrupt_part_is_redone(tmp_path, small_set):
    images, ann = small_set
    out = tmp_path / "run"
    assert run_cli(*overrides(images, ann, out)).returncode == 0
    reference = table(out)
    part = sorted((out / "records").glob("part-*.jsonl"))[2]
    part.write_text(part.read_text()[:40])
    res = run_cli(*overrides(images, ann, out, "run.resume=true"))
    assert res.returncode == 0, res.stdout[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["rank0_batches_done"] == 1 and metrics["rank0_batches_skipped"] == N_IMAGES - 1
    pd.testing.assert_frame_equal(reference, table(out))
