"""Classifier training loop: SGD, step/cosine schedule, AMP on GPU, DDP, atomic checkpoints.

Conventions:

* ``train.batch_size`` is the *global* batch; each of the ``WORLD_SIZE`` processes takes
  ``batch_size // WORLD_SIZE`` images per step (so the learning rate does not depend on
  the number of GPUs);
* a "step" is one optimiser step; the schedule is evaluated per step (``LambdaLR``);
  ``step``: x0.1 every ``step_size`` epochs; ``cosine``: cosine to 0 over
  ``epochs * steps_per_epoch`` steps. ``max_steps`` only stops the run early (it does not
  change the schedule), so stopping and resuming replays the same schedule;
* the shuffle order of epoch ``e`` is ``DistributedSampler(seed).set_epoch(e)`` (also with
  one process) and the torch RNG is re-seeded from ``(seed, epoch, rank)`` at the start of
  each epoch, so a run resumed at an epoch boundary replays the uninterrupted run exactly;
  a run resumed mid-epoch (after ``max_steps``) skips the batches already seen;
* checkpoints (``last.pt``) are written by rank 0 after every epoch and when ``max_steps``
  is reached, atomically (temporary file, then a rename). They hold only tensors and
  plain Python values, so ``torch.load(path, weights_only=True)`` reads them; key
  ``'model'`` is the unwrapped state dict (what ``model.weights=PATH`` loads);
* rank 0 appends one row per epoch (and one at ``max_steps``) to ``metrics.csv`` and the
  per-step losses (its own batches) to ``train_steps.csv``; the latter is rewritten
  atomically during an epoch too, at most every ``train.log_seconds`` seconds (0: after
  every step), so a long epoch shows it is alive. A resumed run drops the rows past its
  checkpoint's step;
* ``train.progress``: a tqdm bar per epoch on rank 0 (steps and loss), shown only when
  stderr is a terminal.
"""

from __future__ import annotations

import io
import logging
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler
from tqdm import tqdm

from wsol_bench.distributed import DistInfo, barrier, broadcast_object
from wsol_bench.files import atomic_write

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "last.pt"
METRICS_NAME = "metrics.csv"
STEPS_NAME = "train_steps.csv"


@dataclass
class TrainResult:
    """Where a run ended."""

    step: int
    epoch: float  # completed epochs (fractional after a mid-epoch max_steps stop)
    train_loss: float | None
    val_top1_err: float | None
    val_top5_err: float | None
    checkpoint: Path
    metrics: Path


class _Skip(Sampler[int]):
    """The indices of ``base`` after the first ``skip``."""

    def __init__(self, base: Sampler[int], skip: int) -> None:
        self.base, self.skip = base, skip

    def __iter__(self) -> Iterator[int]:
        for i, index in enumerate(self.base):
            if i >= self.skip:
                yield index

    def __len__(self) -> int:
        return max(0, len(self.base) - self.skip)  # type: ignore[arg-type]


class _Shard(Sampler[int]):
    """Every ``world``-th index from ``rank``, without DistributedSampler's padding."""

    def __init__(self, n: int, rank: int, world: int) -> None:
        self.indices = list(range(rank, n, world))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def checkpoint_dir(run_dir: str | Path, setting: str) -> Path:
    """``setting`` if absolute, else ``run_dir / setting``."""
    path = Path(setting)
    return path if path.is_absolute() else Path(run_dir) / path


def atomic_save(obj: Mapping[str, Any], path: Path) -> None:
    """``torch.save`` into memory, then :func:`wsol_bench.files.atomic_write`."""
    buffer = io.BytesIO()
    torch.save(dict(obj), buffer)
    atomic_write(path, buffer.getvalue())


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`fit` (``weights_only=True``, onto the CPU)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def _lr_lambda(schedule: str, steps_per_epoch: int, step_size: int, total_steps: int):
    if schedule == "step":
        period = max(1, step_size) * steps_per_epoch
        return lambda step: 0.1 ** (step // period)
    if schedule == "cosine":
        return lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / max(1, total_steps)))
    raise ValueError(f"train.schedule={schedule!r} is not one of 'step', 'cosine'")


def _epoch_seed(seed: int, epoch: int, rank: int, skip: int) -> int:
    return (seed * 1_000_003 + epoch * 10_007 + rank * 101 + skip) % (2**63)


def _append_csv(path: Path, rows: list[dict[str, Any]], keep_up_to_step: int | None = None) -> None:
    """Append ``rows`` to the CSV at ``path``; first drop old rows with ``step > keep_up_to_step``."""
    new = pd.DataFrame(rows)
    if path.exists():
        old = pd.read_csv(path)
        if keep_up_to_step is not None and "step" in old:
            old = old[old["step"] <= keep_up_to_step]
        new = pd.concat([old, new], ignore_index=True) if len(old) else new
    atomic_write(path, new.to_csv(index=False), fsync=False)


class _StepLog:
    """``train_steps.csv`` kept in memory and rewritten atomically (rank 0).

    Rewriting the whole file keeps every read of it complete; ``min_seconds`` between
    rewrites bounds the cost for long runs (the file grows by one line per step).
    """

    COLUMNS = ("step", "epoch", "loss", "lr")

    def __init__(self, path: Path, keep_up_to_step: int, min_seconds: float) -> None:
        self.path, self.min_seconds = path, float(min_seconds)
        text = ",".join(self.COLUMNS) + "\n"
        if keep_up_to_step > 0 and path.exists():
            old = pd.read_csv(path)
            old = old[old["step"] <= keep_up_to_step] if "step" in old else old.iloc[:0]
            text = old.to_csv(index=False)
        self.text = text
        self.pending: list[dict[str, Any]] = []
        self.last = time.monotonic()

    def add(self, row: dict[str, Any]) -> None:
        self.pending.append(row)
        if time.monotonic() - self.last >= self.min_seconds:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.text += pd.DataFrame(self.pending, columns=list(self.COLUMNS)).to_csv(index=False, header=False)
            self.pending = []
        atomic_write(self.path, self.text, fsync=False)
        self.last = time.monotonic()


@torch.no_grad()
def evaluate(
    module: nn.Module, dataset: Dataset, info: DistInfo, batch_size: int, num_workers: int, amp: bool
) -> tuple[float, float, int]:
    """Top-1 and top-5 error (fractions) of ``module`` on ``dataset``, summed over ranks.

    Top-5 is top-min(5, classes). Returns ``(top1_err, top5_err, images)``.
    """
    loader = DataLoader(
        dataset, batch_size=batch_size, sampler=_Shard(len(dataset), info.rank, info.world_size),  # type: ignore[arg-type]
        num_workers=num_workers, pin_memory=info.device.type == "cuda",
    )
    was_training = module.training
    module.eval()
    counts = torch.zeros(3, dtype=torch.float64, device=info.device)  # top1, top5, n
    for x, y in loader:
        x, y = x.to(info.device, non_blocking=True), y.to(info.device, non_blocking=True)
        with torch.autocast(device_type=info.device.type, dtype=torch.float16, enabled=amp):
            logits = module(x)
        k = min(5, logits.shape[1])
        top = logits.float().topk(k, dim=1).indices
        hit = top == y[:, None]
        counts += torch.stack([hit[:, 0].sum(), hit.any(1).sum(), torch.tensor(len(y), device=info.device)]).double()
    if info.distributed:
        dist.all_reduce(counts)
    module.train(was_training)
    top1, top5, n = counts.tolist()
    return 1.0 - top1 / max(n, 1), 1.0 - top5 / max(n, 1), int(n)


def fit(
    module: nn.Module,
    train_set: Dataset,
    val_set: Dataset | None,
    cfg: Any,
    ckpt_dir: str | Path,
    out_dir: str | Path,
    info: DistInfo,
    meta: Mapping[str, Any] | None = None,
) -> TrainResult:
    """Train ``module`` (in place) on ``train_set``; validate on ``val_set`` each epoch.

    ``cfg``: a :class:`~wsol_bench.config.TrainConfig` (or anything with its fields).
    ``ckpt_dir``: where ``last.pt`` lives (read on ``cfg.resume``). ``out_dir``: where the
    CSVs go (rank 0). ``meta``: plain values stored in the checkpoint (config, class list).
    ``module`` must already be on ``info.device``.
    """
    device = info.device
    ckpt_path = Path(ckpt_dir) / CHECKPOINT_NAME
    out_dir = Path(out_dir)
    metrics_path, steps_path = out_dir / METRICS_NAME, out_dir / STEPS_NAME
    if cfg.batch_size % info.world_size:
        raise ValueError(f"train.batch_size={cfg.batch_size} is not divisible by WORLD_SIZE={info.world_size}")
    batch = cfg.batch_size // info.world_size
    use_amp = bool(cfg.amp) and device.type == "cuda"

    sampler: DistributedSampler = DistributedSampler(
        train_set, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=cfg.seed, drop_last=True
    )
    steps_per_epoch = len(sampler) // batch
    if steps_per_epoch == 0:
        raise ValueError(f"{len(train_set)} training images make no full batch of {cfg.batch_size}")  # type: ignore[arg-type]
    schedule_steps = cfg.epochs * steps_per_epoch
    total_steps = schedule_steps if cfg.max_steps is None else min(schedule_steps, int(cfg.max_steps))

    optimiser = torch.optim.SGD(module.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimiser, _lr_lambda(cfg.schedule, steps_per_epoch, cfg.step_size, schedule_steps)
    )
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp)

    step = 0
    if cfg.resume and ckpt_path.exists():
        state = load_checkpoint(ckpt_path)
        module.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        step = int(state["step"])
        if state.get("steps_per_epoch") not in (None, steps_per_epoch):
            raise ValueError(f"{ckpt_path}: written with {state['steps_per_epoch']} steps per epoch, "
                             f"now {steps_per_epoch} (data set or batch size changed)")
        log.info("resumed from %s at step %d (epoch %d)", ckpt_path, step, step // steps_per_epoch)
    elif cfg.resume:
        log.warning("train.resume=true but %s does not exist: starting from step 0", ckpt_path)

    net: nn.Module = module
    if info.distributed:
        net = nn.parallel.DistributedDataParallel(
            module, device_ids=[device.index] if device.type == "cuda" else None
        )
    criterion = nn.CrossEntropyLoss()
    last_row: dict[str, Any] = {}
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    if info.is_main and step == 0:
        for p in (metrics_path, steps_path):
            p.unlink(missing_ok=True)
    step_log = _StepLog(steps_path, step, getattr(cfg, "log_seconds", 30.0)) if info.is_main else None
    show_progress = None if getattr(cfg, "progress", True) else True  # tqdm: None = only on a terminal

    def save(epoch_done: int) -> None:
        if info.is_main:
            atomic_save({
                "model": {k: v.detach().cpu() for k, v in module.state_dict().items()},
                "optimizer": optimiser.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "epoch": epoch_done,
                "step": step,
                "steps_per_epoch": steps_per_epoch,
                **dict(meta or {}),
            }, ckpt_path)
        barrier(info)

    start_epoch = step // steps_per_epoch
    for epoch in range(start_epoch, cfg.epochs):
        if step >= total_steps:
            break
        skip = step - epoch * steps_per_epoch  # > 0 only after a mid-epoch stop
        sampler.set_epoch(epoch)
        torch.manual_seed(_epoch_seed(cfg.seed, epoch, info.rank, skip))
        loader = DataLoader(
            train_set, batch_size=batch, sampler=_Skip(sampler, skip * batch), drop_last=True,
            num_workers=cfg.num_workers, pin_memory=device.type == "cuda",
            persistent_workers=False,
        )
        net.train()
        t0 = time.perf_counter()
        n_steps = 0
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        bar = tqdm(total=min(len(loader), total_steps - step), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="step",
                   leave=False, disable=True if not info.is_main else show_progress)
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            lr = optimiser.param_groups[0]["lr"]
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                loss = criterion(net(x), y)
            optimiser.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimiser)
            scaler.update()
            scheduler.step()
            step += 1
            value = float(loss.detach())
            if not math.isfinite(value):
                raise FloatingPointError(f"non-finite training loss {value} at step {step}")
            loss_sum += value
            n_steps += 1
            if step_log is not None:
                step_log.add({"step": step, "epoch": epoch, "loss": value, "lr": lr})
            bar.set_postfix(loss=f"{value:.4f}", refresh=False)
            bar.update()
            if step >= total_steps:
                break
        bar.close()
        if info.distributed:
            dist.all_reduce(loss_sum)
        train_loss = float(loss_sum) / max(1, n_steps * info.world_size)
        top1 = top5 = None
        n_val = 0
        if val_set is not None:
            top1, top5, n_val = evaluate(module, val_set, info, batch, cfg.num_workers, use_amp)
        epoch_done = step // steps_per_epoch
        last_row = {
            "epoch": step / steps_per_epoch, "step": step, "lr": optimiser.param_groups[0]["lr"],
            "train_loss": train_loss, "val_top1_err": top1, "val_top5_err": top5, "val_images": n_val,
            "seconds": time.perf_counter() - t0,
        }
        if step_log is not None:
            step_log.flush()
        if info.is_main:
            _append_csv(metrics_path, [last_row], keep_up_to_step=step - n_steps)
            log.info("epoch %.2f step %d: loss %.4f, val top-1 err %s, top-5 err %s (%.1f s)",
                     last_row["epoch"], step, train_loss, top1, top5, last_row["seconds"])
        save(epoch_done)

    if not last_row and info.is_main and metrics_path.exists():  # nothing left to do after a resume
        rows = pd.read_csv(metrics_path)
        if len(rows):
            last_row = rows.iloc[-1].to_dict()
    last_row = broadcast_object(last_row, info)

    def _opt(key: str) -> float | None:
        v = last_row.get(key)
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)

    return TrainResult(
        step=step, epoch=step / steps_per_epoch, train_loss=_opt("train_loss"),
        val_top1_err=_opt("val_top1_err"), val_top5_err=_opt("val_top5_err"),
        checkpoint=ckpt_path, metrics=metrics_path,
    )
