"""torchrun sharding and resume: identical per-image results, nothing computed twice."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import (
    REPO,
    SMALL_SET_IMAGES,
    child_pids,
    living,
    results_table,
    run_cli,
    small_run_overrides,
)

pytestmark = pytest.mark.slow
N_IMAGES = SMALL_SET_IMAGES
overrides = small_run_overrides
table = results_table


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, small_set) -> Path:
    """One finished single-process run of the small set; tests that change a run work on a copy."""
    out = tmp_path_factory.mktemp("reference") / "run"
    res = run_cli(*overrides(*small_set, out))
    assert res.returncode == 0, res.stdout[-3000:]
    return out


def copy_of(run: Path, tmp_path: Path) -> Path:
    """A copy of a finished run's folder, for a test to resume or damage."""
    shutil.copytree(run, tmp_path / "run")
    return tmp_path / "run"


def test_two_processes_equal_one(tmp_path, small_set, reference_run):
    images, ann = small_set
    one = reference_run
    # torchrun without hydra.run.dir: the ranks' timestamps differ, yet only rank 0's folder is made
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    before = set(Path(tempfile.gettempdir()).glob("wsol_bench_rank*"))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29531",
           "-m", "wsol_bench", *overrides(images, ann, one)[:-1]]
    res = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:]
    [two] = list((cwd / "outputs" / "localise").iterdir())  # no stray, empty run folder of rank 1
    assert set(Path(tempfile.gettempdir()).glob("wsol_bench_rank*")) == before  # its temporary one is gone
    assert json.loads((two / "metrics.json").read_text())["world_size"] == 2
    pd.testing.assert_frame_equal(table(one), table(two))
    m1, m2 = (json.loads((d / "metrics.json").read_text()) for d in (one, two))
    for key in ("loc_error_at_k", "gt_known_loc_error", "maxboxacc", "maxboxacc_v2", "maxboxacc_v2_at_iou",
                "maxboxacc_curve", "pointing_game", "pointing_game_top1"):
        assert m1[key] == m2[key], key  # merged exactly, not approximately


def test_resume_with_other_settings_is_refused_and_the_original_config_kept(tmp_path, small_set, reference_run):
    images, ann = small_set
    out = copy_of(reference_run, tmp_path)
    original = (out / ".hydra" / "overrides.yaml").read_text()
    for part in sorted((out / "records").glob("part-*.jsonl"))[:2]:
        part.unlink()
    res = run_cli(*overrides(images, ann, out, "run.resume=true", "model.weights=random", "segmentation=center",
                             "tta.crops=2"))
    assert res.returncode != 0
    assert "run.resume=true refused" in res.stdout
    for key in ("model.weights", "tta.crops: 10 -> 2", "segmentation.name: 'graphcut' -> 'center'"):
        assert key in res.stdout, key
    assert "Traceback" not in res.stdout  # the harness's message, alone
    assert (out / ".hydra" / "overrides.yaml").read_text() == original
    assert not list(out.glob(".hydra-resume-*"))  # refused: nothing written
    res = run_cli(*overrides(images, ann, out, "run.resume=true"))  # the same settings resume
    assert res.returncode == 0, res.stdout[-3000:]
    assert json.loads((out / "metrics.json").read_text())["rank0_batches_done"] == 2
    assert (out / ".hydra" / "overrides.yaml").read_text() == original  # the resumed run's files go beside
    assert len(list(out.glob(".hydra-resume-*/overrides.yaml"))) == 1


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("workers_setting, n_workers",
                         [("engine.loader_workers=2", 2), ("engine.segmentation_workers=1", 1)],
                         ids=["loader", "segmentation"])
def test_workers_die_with_a_killed_run(tmp_path, small_set, workers_setting, n_workers):
    images, ann = small_set
    out = tmp_path / "run"
    key = workers_setting.split("=")[0]
    args = [a for a in overrides(images, ann, out) if a.split("=")[0] != key]
    proc = subprocess.Popen([sys.executable, "-m", "wsol_bench", *args, workers_setting], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, workers = time.time() + 120, []
    while time.time() < deadline and proc.poll() is None and not list((out / "records").glob("part-*")):
        workers = child_pids(proc.pid)  # the run is under way (its workers are up) once a part is written
        time.sleep(0.05)
    assert len(workers) >= n_workers, f"the run should have started its workers ({workers_setting})"
    proc.kill()
    proc.wait()
    deadline = time.time() + 2  # PR_SET_PDEATHSIG kills at once (torch's own watchdog polls every 5 s)
    while time.time() < deadline and living(workers):
        time.sleep(0.1)
    alive = {w: Path(f"/proc/{w}/cmdline").read_bytes().replace(b"\0", b" ")[:200] for w in living(workers)}
    assert not alive, f"workers outlived their killed parent: {alive}"


def test_killed_run_resumes_without_recomputing(tmp_path, small_set, reference_run):
    images, ann = small_set
    whole = reference_run

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


def test_corrupt_part_is_redone(tmp_path, small_set, reference_run):
    images, ann = small_set
    out = copy_of(reference_run, tmp_path)
    reference = table(out)
    part = sorted((out / "records").glob("part-*.jsonl"))[2]
    part.write_text(part.read_text()[:40])
    res = run_cli(*overrides(images, ann, out, "run.resume=true"))
    assert res.returncode == 0, res.stdout[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["rank0_batches_done"] == 1 and metrics["rank0_batches_skipped"] == N_IMAGES - 1
    pd.testing.assert_frame_equal(reference, table(out))


FAITHFULNESS = ("evaluation.metrics=[ilsvrc,deletion,insertion,road]", "tta.crops=1", "tta.top_k=1",
                "evaluation.ilsvrc.max_guesses=1",
                "evaluation.deletion.crop=56", "evaluation.insertion.crop=56", "evaluation.road.crop=56",
                "evaluation.deletion.n_steps=8", "evaluation.insertion.n_steps=8",
                "evaluation.road.percentiles=[30,70]")
FAITHFULNESS_KEYS = ("deletion_auc", "deletion_auc_ci95", "deletion_auc_n_images", "insertion_auc",
                     "insertion_auc_ci95", "road_morf", "road_lerf", "road_combined", "road_combined_ci95",
                     "road_n_images")


def test_faithfulness_figures_sharded_and_resumed_equal_one_process(tmp_path, small_set):
    images, ann = small_set
    runs = {}
    # one torch thread per process in both runs: a CPU convolution's float result depends on the thread count
    # (~1e-7 relative), which the probabilities carry; the ranks of a 2-process run get one thread each
    one_thread = {"OMP_NUM_THREADS": "1"}
    for name, extra in (("one", ()), ("two", ("run.processes=2",))):
        out = tmp_path / name
        args = [a for a in overrides(images, ann, out, *FAITHFULNESS) if not (extra and a == "run.processes=1")]
        res = run_cli(*args, *extra, env=one_thread)
        assert res.returncode == 0, res.stdout[-3000:]
        runs[name] = out
    resumed = copy_of(runs["one"], tmp_path)
    for part in sorted((resumed / "records").glob("part-*.jsonl"))[1:4]:
        part.unlink()
    res = run_cli(*overrides(images, ann, resumed, *FAITHFULNESS, "run.resume=true"), env=one_thread)
    assert res.returncode == 0, res.stdout[-3000:]
    runs["resumed"] = resumed
    metrics = {k: json.loads((d / "metrics.json").read_text()) for k, d in runs.items()}
    assert metrics["two"]["world_size"] == 2 and metrics["resumed"]["rank0_batches_done"] == 3
    assert metrics["one"]["deletion_auc_n_images"] == N_IMAGES - 1  # the truncated image has no state
    columns = ["image_id", "deletion_auc", "insertion_auc", "road_morf", "road_lerf", "road_combined"]
    tables = {k: pd.read_csv(d / "per_image.csv")[columns] for k, d in runs.items()}
    assert tables["one"]["road_combined"].notna().sum() == N_IMAGES - 1
    for name in ("two", "resumed"):
        pd.testing.assert_frame_equal(tables["one"], tables[name], check_exact=True)
        for key in FAITHFULNESS_KEYS:
            assert metrics["one"][key] == metrics[name][key], (name, key)  # exactly, not approximately
