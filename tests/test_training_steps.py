"""task=train: the per-step loss file is written during an epoch, and the progress setting."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import wsol_bench.training.loop as loop
from wsol_bench.training.loop import DistInfo, fit


def _data() -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(48, 3, 8, 8, generator=g)
    return TensorDataset(x, (x.mean((1, 2, 3)) > 0).long())


def _cfg(**kw: object) -> SimpleNamespace:
    base = dict(epochs=1, max_steps=None, batch_size=8, lr=0.05, momentum=0.9, weight_decay=0.0, schedule="cosine",
                step_size=30, amp=False, num_workers=0, resume=False, seed=0, progress=False, log_seconds=0.0)
    return SimpleNamespace(**{**base, **kw})


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2))


def _writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Rows of train_steps.csv at each of its writes."""
    seen: list[int] = []
    original = loop.atomic_write

    def spy(path, data, fsync=True):  # type: ignore[no-untyped-def]
        if Path(path).name == loop.STEPS_NAME:
            seen.append(data.count("\n") - 1)
        return original(path, data, fsync)

    monkeypatch.setattr(loop, "atomic_write", spy)
    return seen


def test_steps_file_grows_during_the_epoch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_torch_thread) -> None:
    seen = _writes(monkeypatch)
    fit(_net(), _data(), None, _cfg(log_seconds=0.0), tmp_path / "ckpt", tmp_path, DistInfo())
    assert seen[:6] == [1, 2, 3, 4, 5, 6]  # 48 / 8 = 6 steps, each written before the epoch ends
    steps = pd.read_csv(tmp_path / loop.STEPS_NAME)
    assert steps["step"].tolist() == [1, 2, 3, 4, 5, 6] and list(steps.columns) == ["step", "epoch", "loss", "lr"]


def test_steps_file_rate_limited_and_resumed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_torch_thread) -> None:
    seen = _writes(monkeypatch)
    fit(_net(), _data(), None, _cfg(epochs=2, max_steps=4, log_seconds=3600.0), tmp_path / "ckpt", tmp_path, DistInfo())
    assert seen == [4]  # only when the run stopped
    steps = tmp_path / loop.STEPS_NAME
    steps.write_text(steps.read_text() + "5,0,9.9,0.1\n")  # a crashed run's row
    fit(_net(), _data(), None, _cfg(epochs=2, resume=True, log_seconds=3600.0), tmp_path / "ckpt", tmp_path, DistInfo())
    steps = pd.read_csv(tmp_path / loop.STEPS_NAME)
    assert steps["step"].tolist() == list(range(1, 13)) and 9.9 not in steps["loss"].tolist()


def test_progress_bar_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_torch_thread) -> None:
    disabled = []
    real = loop.tqdm

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        disabled.append(kwargs["disable"])
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "tqdm", spy)
    fit(_net(), _data(), None, _cfg(progress=True), tmp_path / "a", tmp_path / "a", DistInfo())
    fit(_net(), _data(), None, _cfg(progress=False), tmp_path / "b", tmp_path / "b", DistInfo())
    assert disabled == [None, True]  # None: tqdm shows it only on a terminal
