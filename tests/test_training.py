"""task=train: data layout and labels, the training loop, checkpoints and resume."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from wsol_bench.distributed import DistInfo
from wsol_bench.training.data import (
    ClassFolderDataset,
    class_list_for,
    eval_transform,
    find_train_dir,
    train_transform,
)
from wsol_bench.training.loop import _lr_lambda, fit, load_checkpoint
from wsol_bench.training.synthetic import make_synthetic_dataset, synthetic_wnid

REPO = Path(__file__).resolve().parent.parent
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def _touch_image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (10, 20, 30)).save(path)


@pytest.mark.parametrize("layout", ["train", "ILSVRC/Data/CLS-LOC/train", "."])
def test_find_train_dir_layouts(tmp_path: Path, layout: str) -> None:
    _touch_image(tmp_path / layout / "n01440764" / "a.JPEG")
    assert find_train_dir(tmp_path).resolve() == (tmp_path / layout).resolve()


def test_labels_are_sorted_wnid_positions(tmp_path: Path) -> None:
    for wnid in ("n01518878", "n01440764"):  # ostrich (9), tench (0) in ILSVRC order
        _touch_image(tmp_path / wnid / "x.JPEG")
    assert ClassFolderDataset(tmp_path).classes == ["n01440764", "n01518878"]
    full = class_list_for(tmp_path, 1000)  # ILSVRC folders and 1000 outputs: the 1000-way order
    assert len(full) == 1000 and full.index("n01518878") == 9
    ds = ClassFolderDataset(tmp_path, full)
    assert sorted(label for _, label in ds.samples) == [0, 9]
    assert class_list_for(tmp_path, 4) == ["n01440764", "n01518878"]  # else the folder names
    own = ClassFolderDataset(tmp_path, ["n09999999", "n01518878", "n01440764"])  # any order: sorted
    assert [label for _, label in own.samples] == [0, 1]
    with pytest.raises(ValueError, match="not in the class list"):
        ClassFolderDataset(tmp_path, ["n01440764"])
    with pytest.raises(ValueError, match="num_classes"):
        class_list_for(tmp_path, 1)


def test_synthetic_dataset_deterministic(tmp_path: Path) -> None:
    tr, va = make_synthetic_dataset(tmp_path / "a", num_classes=3, train_per_class=4, val_per_class=2, size=24, seed=1)
    tr2, _ = make_synthetic_dataset(tmp_path / "b", num_classes=3, train_per_class=4, val_per_class=2, size=24, seed=1)
    assert sorted(p.name for p in tr.iterdir()) == [synthetic_wnid(k) for k in range(3)]
    files = sorted(tr.glob("*/*.JPEG"))
    assert len(files) == 12 and len(list(va.glob("*/*.JPEG"))) == 6
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(files, sorted(tr2.glob("*/*.JPEG"))))
    x, y = ClassFolderDataset(tr, transform=train_transform(16, MEAN, STD))[5]
    assert x.shape == (3, 16, 16) and y == 1
    assert ClassFolderDataset(va, transform=eval_transform(16, MEAN, STD))[0][0].shape == (3, 16, 16)


def test_lr_schedules() -> None:
    step = _lr_lambda("step", steps_per_epoch=10, step_size=2, total_steps=100)
    assert [step(s) for s in (0, 19, 20, 40)] == pytest.approx([1.0, 1.0, 0.1, 0.01])
    cos = _lr_lambda("cosine", steps_per_epoch=10, step_size=2, total_steps=100)
    assert [cos(s) for s in (0, 50, 100, 150)] == pytest.approx([1.0, 0.5, 0.0, 0.0])
    with pytest.raises(ValueError):
        _lr_lambda("linear", 10, 2, 100)


# ---------------------------------------------------------------------------- the loop


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> tuple[ClassFolderDataset, ClassFolderDataset]:
    root = tmp_path_factory.mktemp("shapes")
    tr, va = make_synthetic_dataset(root, num_classes=4, train_per_class=16, val_per_class=4, size=32)
    return (ClassFolderDataset(tr, transform=train_transform(24, MEAN, STD)),
            ClassFolderDataset(va, transform=eval_transform(24, MEAN, STD)))


def tiny_net(num_classes: int = 4) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.1), nn.Linear(32, num_classes),
    )


def train_cfg(**kw: object) -> SimpleNamespace:
    base = dict(epochs=2, max_steps=None, batch_size=16, lr=0.05, momentum=0.9, weight_decay=5e-4,
                schedule="cosine", step_size=30, amp=True, num_workers=0, resume=False, seed=0)
    return SimpleNamespace(**{**base, **kw})


def _fit(shapes, out: Path, **kw: object):  # type: ignore[no-untyped-def]
    net = tiny_net()
    res = fit(net, shapes[0], shapes[1], train_cfg(**kw), out / "checkpoints", out, DistInfo(), {"classes": ["a"]})
    return net, res


def test_fit_learns_and_writes_weights_only_checkpoint(shapes, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    net, res = _fit(shapes, tmp_path, epochs=5)
    steps = pd.read_csv(tmp_path / "train_steps.csv")
    assert steps["step"].tolist() == list(range(1, 21))  # 64 images / 16 = 4 steps per epoch
    assert steps["loss"].iloc[-4:].mean() < steps["loss"].iloc[:4].mean() - 0.2
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    assert metrics["step"].tolist() == [4, 8, 12, 16, 20]
    assert {"epoch", "lr", "train_loss", "val_top1_err", "val_top5_err"} <= set(metrics.columns)
    assert metrics["val_top1_err"].iloc[-1] < 0.75 and (metrics["val_top5_err"] == 0).all()  # 4 classes
    assert res.step == 20 and res.val_top1_err == metrics["val_top1_err"].iloc[-1]
    ckpt = load_checkpoint(res.checkpoint)  # weights_only=True
    assert {"model", "optimizer", "scheduler", "scaler", "epoch", "step"} <= set(ckpt)
    assert (ckpt["epoch"], ckpt["step"], ckpt["classes"]) == (5, 20, ["a"])
    for k, v in net.state_dict().items():
        assert torch.equal(ckpt["model"][k], v)
    assert not list(res.checkpoint.parent.glob(".*tmp*"))  # the atomic write left no temporary file


def test_resume_at_epoch_boundary_replays_the_uninterrupted_run(shapes, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    straight, _ = _fit(shapes, tmp_path / "a", epochs=2)
    _, first = _fit(shapes, tmp_path / "b", epochs=2, max_steps=4)
    assert first.step == 4 and load_checkpoint(first.checkpoint)["epoch"] == 1
    resumed, res = _fit(shapes, tmp_path / "b", epochs=2, resume=True)
    assert res.step == 8
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)
    steps = pd.read_csv(tmp_path / "b" / "train_steps.csv")
    pd.testing.assert_frame_equal(steps, pd.read_csv(tmp_path / "a" / "train_steps.csv"))


def test_resume_mid_epoch_continues_the_step_count(shapes, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, first = _fit(shapes, tmp_path, epochs=2, max_steps=3)
    assert first.step == 3 and first.epoch == pytest.approx(0.75)
    _, again = _fit(shapes, tmp_path, epochs=2, max_steps=3, resume=True)  # nothing left to do
    assert again.step == 3
    _, res = _fit(shapes, tmp_path, epochs=2, max_steps=6, resume=True)
    assert res.step == 6
    steps = pd.read_csv(tmp_path / "train_steps.csv")
    assert steps["step"].tolist() == [1, 2, 3, 4, 5, 6] and steps["epoch"].tolist() == [0, 0, 0, 0, 1, 1]
    assert pd.read_csv(tmp_path / "metrics.csv")["step"].tolist() == [3, 4, 6]
    ckpt = load_checkpoint(res.checkpoint)
    assert (ckpt["step"], ckpt["epoch"], ckpt["scheduler"]["last_epoch"]) == (6, 1, 6)


def test_fresh_run_without_resume_restarts(shapes, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _fit(shapes, tmp_path, epochs=1)
    _, res = _fit(shapes, tmp_path, epochs=1, max_steps=2, resume=False)
    assert res.step == 2
    assert pd.read_csv(tmp_path / "train_steps.csv")["step"].tolist() == [1, 2]


# ---------------------------------------------------------------------------- the runner


def test_runner_smoke_experiment_with_stand_in_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``+experiment=train_smoke`` through the Hydra config, a tiny module instead of the ConvNet."""
    from hydra import compose, initialize_config_dir

    from wsol_bench.config import register_configs
    from wsol_bench.tasks import train as runner

    monkeypatch.chdir(tmp_path)
    register_configs()
    own_model = ["model.name=custom", "model.factory=tests.test_training:tiny_net", "model.weights=null"]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        assert compose("config", overrides=["+experiment=train_smoke"]).model.name == "paper_convnet"
        cfg = compose("config", overrides=["+experiment=train_smoke", *own_model, "train.max_steps=5", "train.crop=24"])
        cfg2 = compose("config", overrides=["+experiment=train_smoke", *own_model, "train.resume=true",
                                            "train.crop=24"])
    assert (cfg.task.name, cfg.model.num_classes) == ("train", 4)
    first = runner.run(cfg)
    out = tmp_path / "outputs" / "train"
    assert first["step"] == 5 and (out / "synthetic" / "train" / synthetic_wnid(3)).is_dir()
    second = runner.run(cfg2)
    assert second["step"] == 16  # 2 epochs of 128 / 16 steps, continuing from step 5
    ckpt = load_checkpoint(out / "checkpoints" / "last.pt")
    assert ckpt["config"]["train"]["batch_size"] == 16 and ckpt["model_name"] == "custom"
    assert ckpt["classes"] == [synthetic_wnid(k) for k in range(4)]


@pytest.mark.slow
def test_smoke_experiment_cli_learns_and_resumes(tmp_path: Path) -> None:
    """The real CLI and ConvNet: loss falls over 2 epochs; the resumed run continues at step 8."""
    base = [sys.executable, "-m", "wsol_bench", "+experiment=train_smoke", f"hydra.run.dir={tmp_path}"]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    subprocess.run([*base, "train.max_steps=8"], cwd=REPO, check=True, capture_output=True, timeout=300, env=env)
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 8
    subprocess.run([*base, "train.resume=true"], cwd=REPO, check=True, capture_output=True, timeout=300, env=env)
    steps = pd.read_csv(tmp_path / "train_steps.csv")
    assert steps["step"].tolist() == list(range(1, 17))
    assert steps["loss"].iloc[-4:].mean() < steps["loss"].iloc[:4].mean() - 0.05
    assert pd.read_csv(tmp_path / "metrics.csv")["step"].tolist() == [8, 16]
    from wsol_bench.models import ModelSpec, build_classifier

    clf = build_classifier(ModelSpec(name="paper_convnet", weights=str(tmp_path / "checkpoints" / "last.pt"),
                                     num_classes=4, device="cpu"))
    assert clf.module(torch.zeros(1, 3, 64, 64)).shape == (1, 4)


DDP_SCRIPT = """
import sys, torch
from types import SimpleNamespace
sys.path.insert(0, sys.argv[3])
from test_training import tiny_net, MEAN, STD
from wsol_bench.training import *
from wsol_bench.distributed import barrier, init_distributed, shutdown_distributed
info = init_distributed(torch.device("cpu"))
root = sys.argv[1]
if info.is_main:
    make_synthetic_dataset(root + "/data", num_classes=4, train_per_class=16, val_per_class=4, size=32)
barrier(info)
ds = ClassFolderDataset(root + "/data/train", transform=train_transform(24, MEAN, STD))
vs = ClassFolderDataset(root + "/data/val", transform=eval_transform(24, MEAN, STD))
net = tiny_net()
cfg = SimpleNamespace(epochs=2, max_steps=int(sys.argv[2]), batch_size=16, lr=0.05, momentum=0.9,
                      weight_decay=5e-4, schedule="step", step_size=30, amp=True, num_workers=0,
                      resume=True, seed=0)
res = fit(net, ds, vs, cfg, root + "/run/checkpoints", root + "/run", info)
with open(f"{root}/result_{info.rank}.txt", "w") as fh:  # a file per rank: stdout lines of ranks interleave
    fh.write(f"RESULT {info.rank} {res.step} {sum(float(p.sum()) for p in net.parameters())}\\n")
shutdown_distributed()
"""


@pytest.mark.slow
def test_ddp_gloo_two_processes_stay_in_sync_and_resume(tmp_path: Path) -> None:
    """torchrun with 2 CPU processes (Gloo): same weights on both ranks; resume continues the step."""
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    results = []
    for max_steps in (3, 8):  # 64 images, global batch 16: 4 steps per epoch
        subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", str(script), str(tmp_path),
             str(max_steps), str(Path(__file__).parent)],
            cwd=REPO, capture_output=True, text=True, timeout=300, env=env, check=True,
        )
        rows = sorted((tmp_path / f"result_{rank}.txt").read_text().split()[1:] for rank in (0, 1))
        assert [r[:2] for r in rows] == [["0", str(max_steps)], ["1", str(max_steps)]]
        assert rows[0][2] == rows[1][2]  # identical parameters on both ranks
        results.append(rows)
    assert pd.read_csv(tmp_path / "run" / "train_steps.csv")["step"].tolist() == list(range(1, 9))
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 8
