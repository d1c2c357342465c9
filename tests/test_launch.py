"""run.processes: ranks started by torch's launcher, the same as torchrun's; how many; failures."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.helpers import REPO, child_pids, compose_cfg, living, results_table, run_cli, small_run_overrides
from wsol_bench.pipeline import settings
from wsol_bench.pipeline.settings import EngineSettings, world_size_for
from wsol_bench.tasks.factory import localisation_plan

CPU = torch.device("cpu")


def _rank_folders() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("wsol_bench_rank*"))


# ----------------------------------------------------------------------------- how many ranks


def test_auto_is_one_rank_per_core_capped_by_batches_and_memory(monkeypatch):
    monkeypatch.setattr(settings, "usable_cores", lambda: 8)
    monkeypatch.setattr(settings, "available_memory", lambda: 64 * 2**30)
    assert world_size_for("auto", CPU, batches=100)[0] == 8
    assert world_size_for("auto", CPU, batches=3)[0] == 3  # no idle rank
    assert world_size_for("auto", CPU, batches=0)[0] == 1
    monkeypatch.setattr(settings, "available_memory", lambda: 3 * settings.RANK_MEMORY + 1)
    assert world_size_for("auto", CPU, batches=100)[0] == 3


def test_an_explicit_number_is_capped_by_batches_cores_and_memory(monkeypatch):
    """run.processes=99 with 2 images on 2 cores starts 2 ranks, not 99."""
    monkeypatch.setattr(settings, "usable_cores", lambda: 2)
    monkeypatch.setattr(settings, "available_memory", lambda: 64 * 2**30)
    world, why = world_size_for(99, CPU, batches=2)
    assert world == 2 and "batches 2" in why and "cores 2" in why
    assert world_size_for(1, CPU, batches=100)[0] == 1
    monkeypatch.setattr(settings, "usable_cores", lambda: 64)
    monkeypatch.setattr(settings, "available_memory", lambda: 5 * settings.RANK_MEMORY)
    assert world_size_for(99, CPU, batches=1000)[0] == 5  # memory for 5 ranks


def test_auto_on_gpus_is_one_rank_per_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert world_size_for("auto", torch.device("cuda", 0), batches=100)[0] == 4
    assert world_size_for(8, torch.device("cuda", 0), batches=100)[0] == 4


def test_segmentation_and_loader_workers_auto(monkeypatch):
    engine = EngineSettings()
    assert engine.resolved_segmentation_workers(CPU, 2) == 0 and engine.resolved_loader_workers(CPU) == 0
    monkeypatch.setattr(settings, "usable_cores", lambda: 16)
    gpu = torch.device("cuda", 0)
    assert engine.resolved_segmentation_workers(gpu, 2) == 7  # 16 cores / 2 GPU ranks - the rank itself
    assert engine.resolved_loader_workers(gpu) == 2
    assert EngineSettings(segmentation_workers=3).resolved_segmentation_workers(gpu, 2) == 3


def test_processes_setting_is_checked_before_anything_loads():
    assert localisation_plan(compose_cfg()).run.processes == "auto"
    assert localisation_plan(compose_cfg("run.processes=3")).run.processes == 3
    with pytest.raises(ValueError, match="run.processes=0: must be auto or an integer >= 1"):
        localisation_plan(compose_cfg("run.processes=0", "dataset.images=/does/not/exist"))


# ----------------------------------------------------------------------------- runs


def fails_on_rank_one(num_classes: int = 1000) -> torch.nn.Module:
    """A model factory (model=custom) that fails in rank 1 only."""
    import os

    if os.environ.get("RANK") == "1":
        raise RuntimeError("deliberate failure in rank 1")
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                               torch.nn.Linear(4, num_classes))


@pytest.mark.slow
def test_two_processes_equal_one_and_leave_no_folders(tmp_path, small_set):
    images, ann = small_set
    before = _rank_folders()
    one, two = tmp_path / "one", tmp_path / "two"
    args = [a for a in small_run_overrides(images, ann, one) if not a.startswith("run.processes")]
    # one process with one torch thread, as each rank has: the same arithmetic, bit for bit
    res = run_cli(*args, "run.processes=1", env={"OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stdout[-3000:]
    cwd = tmp_path / "elsewhere"  # no hydra.run.dir: only the run's own folder is made
    cwd.mkdir()
    res = run_cli(*args[:-1], "run.processes=2", cwd=cwd)
    assert res.returncode == 0, res.stdout[-3000:]
    [two] = list((cwd / "outputs" / "localise").iterdir())
    assert json.loads((two / "metrics.json").read_text())["world_size"] == 2
    pd.testing.assert_frame_equal(results_table(one), results_table(two), check_exact=True)
    assert (one / "predictions.csv").read_bytes() == (two / "predictions.csv").read_bytes()
    assert sorted(p.name for p in (two / "records").glob("part-*")) == sorted(p.name for p in (one / "records").glob("part-*"))
    assert _rank_folders() == before
    log = (two / "wsol_bench.log").read_text()
    assert "[rank 1]" in log and "[rank 0]" in log  # the ranks log into the run's log, with a time and their rank


@pytest.mark.slow
def test_a_failing_rank_fails_the_run_with_its_error(tmp_path, small_set):
    images, ann = small_set
    before = _rank_folders()
    args = [a for a in small_run_overrides(images, ann, tmp_path / "run") if not a.startswith("run.processes")]
    start = time.monotonic()
    res = run_cli(*args, "run.processes=2", "model=custom", "model.factory=tests.test_launch:fails_on_rank_one",
                  timeout=300)
    assert res.returncode != 0
    assert time.monotonic() - start < 120  # no hang
    assert "rank 1 of 2 failed" in res.stdout
    assert "deliberate failure in rank 1" in res.stdout.split("rank 1 of 2 failed", 1)[1]
    assert not (tmp_path / "run" / "metrics.json").exists()
    assert _rank_folders() == before


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_ranks_die_with_a_killed_parent(tmp_path, small_set):
    images, ann = small_set
    before = _rank_folders()
    args = [a for a in small_run_overrides(images, ann, tmp_path / "run") if not a.startswith("run.processes")]
    proc = subprocess.Popen([sys.executable, "-m", "wsol_bench", *args, "run.processes=2"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, children = time.time() + 120, []
    while time.time() < deadline and proc.poll() is None and len(children) < 2:
        children = child_pids(proc.pid)
        time.sleep(0.05)
    assert children, "the run should have started its ranks"
    time.sleep(1.0)  # the ranks are importing or running
    proc.kill()
    proc.wait()
    deadline = time.time() + 20
    alive = children
    while time.time() < deadline and alive:
        alive = living(children)
        time.sleep(0.1)
    assert not alive, "a rank outlived its killed parent"
    assert _rank_folders() == before
