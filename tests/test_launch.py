"""run.processes: ranks started by the run itself, the same as torchrun's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.helpers import REPO, child_pids, living, run_cli
from tests.test_sharding import overrides, small_set, table  # noqa: F401  (small_set is a fixture)
from wsol_bench.pipeline import launch
from wsol_bench.pipeline.launch import parse_processes, world_size_for

CPU = torch.device("cpu")


def _rank_folders() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("wsol_bench_rank*"))


# ----------------------------------------------------------------------------- how many ranks


@pytest.mark.parametrize("value, expected", [("auto", None), ("AUTO", None), (3, 3), ("1", 1)])
def test_parse_processes(value, expected):
    assert parse_processes(value) == expected


@pytest.mark.parametrize("value", [0, -1, "two", "1.5", ""])
def test_parse_processes_refuses(value):
    with pytest.raises(ValueError, match="run.processes=.*must be auto or an integer >= 1"):
        parse_processes(value)


@pytest.fixture
def not_a_rank(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)


def test_auto_is_one_rank_per_core_capped_by_batches_and_memory(monkeypatch, not_a_rank):
    monkeypatch.setattr(launch, "usable_cores", lambda: 8)
    monkeypatch.setattr(launch, "available_memory", lambda: 64 * 2**30)
    assert world_size_for(None, CPU, batches=100) == 8
    assert world_size_for(None, CPU, batches=3) == 3  # no idle rank
    assert world_size_for(None, CPU, batches=0) == 1
    monkeypatch.setattr(launch, "available_memory", lambda: 3 * launch.RANK_MEMORY + 1)
    assert world_size_for(None, CPU, batches=100) == 3
    assert world_size_for(5, CPU, batches=2) == 5  # an explicit number is taken as is


def test_auto_on_gpus_is_one_rank_per_gpu(monkeypatch, not_a_rank):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert world_size_for(None, torch.device("cuda", 0), batches=100) == 4


def test_a_rank_never_starts_ranks(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert world_size_for(None, CPU, batches=100) == 1
    assert world_size_for(4, CPU, batches=100) == 1


def test_segmentation_workers_auto_is_zero_on_a_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert launch.segmentation_workers_for("auto", None) == 0
    assert launch.segmentation_workers_for("cpu", 4) == 0


def test_segmentation_workers_auto_uses_a_gpu_ranks_free_cores(monkeypatch, not_a_rank):
    monkeypatch.setattr(launch, "usable_cores", lambda: 16)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert launch.segmentation_workers_for("cuda", None) == 7  # 16 cores / 2 GPU ranks - the rank itself


def test_processes_setting_is_checked_before_anything_loads():
    from tests.test_config import compose_cfg
    from wsol_bench.tasks.factory import localisation_plan

    assert localisation_plan(compose_cfg()).processes is None  # auto by default
    assert localisation_plan(compose_cfg("run.processes=3")).processes == 3
    with pytest.raises(ValueError, match="run.processes='0': must be auto or an integer >= 1"):
        localisation_plan(compose_cfg("run.processes=0", "dataset.images=/does/not/exist"))


# ----------------------------------------------------------------------------- runs


def fails_on_rank_one(num_classes: int = 1000) -> torch.nn.Module:
    """A model factory (model=custom) that fails in rank 1 only."""
    if os.environ.get("RANK") == "1":
        raise RuntimeError("deliberate failure in rank 1")
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                               torch.nn.Linear(4, num_classes))


@pytest.mark.slow
def test_two_processes_equal_one_and_leave_no_folders(tmp_path, small_set):
    images, ann = small_set
    before = _rank_folders()
    one, two = tmp_path / "one", tmp_path / "two"
    args = [a for a in overrides(images, ann, one) if not a.startswith("run.processes")]
    # one process with one torch thread, as each rank has: the same arithmetic, bit for bit
    res = run_cli(*args, "run.processes=1", env={"OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stdout[-3000:]
    cwd = tmp_path / "elsewhere"  # no hydra.run.dir: rank 1's own (temporary) folder must not stay
    cwd.mkdir()
    res = run_cli(*args[:-1], "run.processes=2", cwd=cwd)
    assert res.returncode == 0, res.stdout[-3000:]
    [two] = list((cwd / "outputs" / "localise").iterdir())
    assert json.loads((two / "metrics.json").read_text())["world_size"] == 2
    pd.testing.assert_frame_equal(table(one), table(two), check_exact=True)
    assert (one / "predictions.csv").read_bytes() == (two / "predictions.csv").read_bytes()
    assert sorted(p.name for p in (two / "records").glob("part-*")) == sorted(p.name for p in (one / "records").glob("part-*"))
    assert _rank_folders() == before


@pytest.mark.slow
def test_a_failing_rank_fails_the_run_with_its_error(tmp_path, small_set):
    images, ann = small_set
    before = _rank_folders()
    args = [a for a in overrides(images, ann, tmp_path / "run") if not a.startswith("run.processes")]
    start = time.monotonic()
    res = run_cli(*args, "run.processes=2", "model=custom", "model.factory=tests.test_launch:fails_on_rank_one",
                  timeout=300)
    assert res.returncode != 0
    assert time.monotonic() - start < 120  # no hang
    assert "rank 1 of 2 (started by run.processes) exited with code 1" in res.stdout
    assert "deliberate failure in rank 1" in res.stdout.split("exited with code 1", 1)[1]  # in rank 0's error
    assert not (tmp_path / "run" / "metrics.json").exists()
    assert _rank_folders() == before


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_ranks_die_with_a_killed_parent(tmp_path, small_set):
    images, ann = small_set
    before = _rank_folders()
    args = [a for a in overrides(images, ann, tmp_path / "run") if not a.startswith("run.processes")]
    proc = subprocess.Popen([sys.executable, "-m", "wsol_bench", *args, "run.processes=2"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, children = time.time() + 120, []
    while time.time() < deadline and proc.poll() is None and not children:
        children = child_pids(proc.pid)
        time.sleep(0.05)
    assert children, "the run should have started rank 1"
    time.sleep(1.0)  # rank 1 is importing or running
    proc.kill()
    proc.wait()
    deadline = time.time() + 20  # a rank still importing notices when it reaches the launcher
    alive = children
    while time.time() < deadline and alive:
        alive = living(children)
        time.sleep(0.1)
    assert not alive, "rank 1 outlived its killed parent"
    assert _rank_folders() == before  # a rank started by run.processes has no folder of its own
