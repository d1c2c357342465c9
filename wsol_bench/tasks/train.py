"""``task=train``: train a classifier on an ImageNet-style ``train/<wnid>/*.JPEG`` folder.

Data: ``train.train_dir`` (a folder of class folders), else found under ``dataset.root``
(devkit ``train/`` or Kaggle ``ILSVRC/Data/CLS-LOC/train/``). ``train.val_dir``: same
layout, or null to skip validation. With ``dataset.name=synthetic`` and no
``train.train_dir``, a tiny shapes data set (``model.num_classes`` classes) is generated
under ``<run dir>/synthetic/`` (the ``+experiment=train_smoke`` set-up).

Labels: sorted-WNID positions in ``dataset.synset_mapping`` if set, else in the 1000
ILSVRC WNIDs when ``model.num_classes=1000`` and all folders are ILSVRC WNIDs, else in the
sorted folder names. Weights: ``model.weights`` null means *from scratch* here (``random``,
seeded by ``model.seed``); a path fine-tunes from it.

Outputs (run dir): ``metrics.csv`` (per epoch: step, lr, train loss, val top-1/top-5
error), ``train_steps.csv`` (per step loss and lr), ``checkpoints/last.pt`` (or under an
absolute ``train.checkpoint_dir``). Resume: rerun with ``train.resume=true`` and
``hydra.run.dir=<the first run's dir>`` (or an absolute ``train.checkpoint_dir``).
Multi-GPU: ``torchrun --nproc_per_node=N -m wsol_bench task=train ...`` (pass
``hydra.run.dir`` so all ranks agree; rank 0's run dir is used in any case).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from wsol_bench.distributed import (
    barrier,
    broadcast_object,
    init_distributed,
    shutdown_distributed,
)
from wsol_bench.tasks import run_dir
from wsol_bench.tasks.factory import model_spec
from wsol_bench.training.data import (
    ClassFolderDataset,
    class_list_for,
    eval_transform,
    find_train_dir,
    train_transform,
)
from wsol_bench.training.loop import checkpoint_dir, fit
from wsol_bench.training.synthetic import make_synthetic_dataset

log = logging.getLogger(__name__)


def _data_dirs(cfg: DictConfig, out: Path, is_main: bool) -> tuple[Path, Path | None]:
    t = cfg.train
    if t.train_dir is not None:
        return find_train_dir(t.train_dir), (Path(t.val_dir) if t.val_dir is not None else None)
    if cfg.dataset.name == "synthetic":
        root = out / "synthetic"
        if is_main:
            make_synthetic_dataset(root, num_classes=cfg.model.num_classes, seed=t.seed)
        return root / "train", root / "val"
    if cfg.dataset.get("root") is not None:
        return find_train_dir(cfg.dataset.root), (Path(t.val_dir) if t.val_dir is not None else None)
    raise ValueError("task=train needs train.train_dir=PATH (folders <wnid>/*.JPEG), dataset.root=PATH, "
                     "or dataset.name=synthetic (see +experiment=train_smoke)")


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train; return the last epoch's figures (step, train loss, val errors, checkpoint path)."""
    from wsol_bench.models import build_classifier, resolve_device

    info = init_distributed(resolve_device(cfg.model.device))
    try:
        out = Path(broadcast_object(str(run_dir("train")), info))
        spec = model_spec(cfg)
        classifier = build_classifier(replace(spec, weights=spec.weights or "random"))
        module = classifier.module.to(info.device).train()

        train_dir, val_dir = _data_dirs(cfg, out, info.is_main)
        barrier(info)  # the synthetic data exist before any rank lists them
        synsets = None
        if cfg.dataset.get("synset_mapping"):
            from wsol_bench.data.synsets import read_synset_mapping

            synsets = list(read_synset_mapping(cfg.dataset.synset_mapping).wnids)
        classes = class_list_for(train_dir, cfg.model.num_classes, synsets)
        crop = cfg.train.crop
        train_set = ClassFolderDataset(train_dir, classes, train_transform(crop, classifier.mean, classifier.std))
        val_set = (ClassFolderDataset(val_dir, classes, eval_transform(crop, classifier.mean, classifier.std))
                   if val_dir is not None else None)
        if info.is_main:
            log.info("training %s on %d images (%d classes) from %s; validation: %s", classifier.name,
                     len(train_set), len(classes), train_dir, f"{len(val_set)} images" if val_set else "none")
        meta = {
            "model_name": str(cfg.model.name),
            "num_classes": int(cfg.model.num_classes),
            "classes": list(classes),
            "mean": list(classifier.mean),
            "std": list(classifier.std),
            "config": OmegaConf.to_container(cfg, resolve=True),
        }
        ckpt_dir = checkpoint_dir(out, cfg.train.checkpoint_dir)
        result = fit(module, train_set, val_set, cfg.train, ckpt_dir, out, info, meta)
    finally:
        shutdown_distributed()
    summary = {
        "step": result.step,
        "epoch": result.epoch,
        "train_loss": result.train_loss,
        "val_top1_err": result.val_top1_err,
        "val_top5_err": result.val_top5_err,
        "checkpoint": str(result.checkpoint),
    }
    log.info("train: %s", summary)
    return summary
