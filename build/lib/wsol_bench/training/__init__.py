"""Classifier training on ImageNet-style class folders (``task=train``)."""

from wsol_bench.training.data import (
    ClassFolderDataset,
    class_list_for,
    eval_transform,
    find_train_dir,
    train_transform,
)
from wsol_bench.training.loop import TrainResult, checkpoint_dir, fit, load_checkpoint
from wsol_bench.training.synthetic import make_synthetic_dataset

__all__ = [
    "ClassFolderDataset",
    "TrainResult",
    "checkpoint_dir",
    "class_list_for",
    "eval_transform",
    "find_train_dir",
    "fit",
    "load_checkpoint",
    "make_synthetic_dataset",
    "train_transform",
]
