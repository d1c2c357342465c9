"""Shared fixtures: the real ILSVRC sample in ../shared (skipped when absent), a small
synthetic data set, one torch thread, no network."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tests.helpers import make_small_set

REPO = Path(__file__).resolve().parent.parent
SHARED_SAMPLE = Path(os.environ.get("WSOL_SHARED_SAMPLE", REPO.parent / "shared" / "ilsvrc_val_sample"))


@pytest.fixture(scope="session")
def shared_sample() -> Path:
    """``../shared/ilsvrc_val_sample`` (real ILSVRC-2012 validation data, never copied into the repo)."""
    if not (SHARED_SAMPLE / "LOC_val_solution.csv").is_file():
        pytest.skip(f"real ILSVRC sample not found at {SHARED_SAMPLE} (set WSOL_SHARED_SAMPLE)")
    return SHARED_SAMPLE


@pytest.fixture
def one_torch_thread():
    """One intra-op torch thread for small models: toy nets gain nothing from more, and on a
    busy 2-core machine each op's thread barrier can stall for a scheduler time slice
    (measured: the real-model test took 5 s with 1 thread and 27 s with 2 under load)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> tuple[Path, Path]:
    """Six small images (five readable, one truncated) with XML ground truth: ``(images, annotations)``."""
    return make_small_set(tmp_path_factory.mktemp("small_set"))


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any socket connection fail: weights must load offline."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network access attempted in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
