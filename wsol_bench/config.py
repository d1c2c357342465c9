"""The Hydra configuration schema (the only module besides the task runners that knows Hydra).

Every YAML file under ``conf/`` is merged onto this schema. The typed sections are the
parts' own parameter dataclasses, translated here for Hydra (:func:`schema_of`), so each
setting has one home, its dataclass (with its default and its range check): ``dataset``
(:class:`~wsol_bench.data.sources.DatasetSpec`), ``model`` (:class:`~wsol_bench.models.ModelSpec`),
``tta`` (:class:`~wsol_bench.saliency.CropSettings`: the paper's crops and the top-k
classes), ``ensemble`` (:class:`~wsol_bench.saliency.ensemble.EnsembleSettings`: other
localisers whose maps join the method's), ``engine`` (:class:`~wsol_bench.pipeline.settings.EngineSettings`), ``run``
(:class:`~wsol_bench.pipeline.settings.RunSettings`), ``sanity`` (:class:`~wsol_bench.sanity.SanitySettings`,
``task=sanity``). A misspelt key there fails in Hydra
naming the key. The ``saliency``, ``segmentation`` and ``evaluation`` sections are open
mappings whose keys depend on the chosen method (``conf/saliency/<method>.yaml`` lists
them); :mod:`wsol_bench.tasks.factory` checks every key, type and range against the
method's own parameter dataclass before any model or data is loaded, with a message naming
the key and what is allowed (no ``+`` is needed to set a method's parameter).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Optional

from wsol_bench.data.sources import DatasetSpec
from wsol_bench.models import ModelSpec
from wsol_bench.pipeline.settings import EngineSettings, RunSettings
from wsol_bench.saliency.ensemble import EnsembleSettings
from wsol_bench.saliency.image_saliency import CropSettings
from wsol_bench.sanity import SanitySettings

#: the sections whose keys depend on the chosen method (open to new keys, checked by the factory)
OPEN_SECTIONS = ("saliency", "segmentation", "evaluation")


def _schema_type(hint: Any) -> Any:
    """A type annotation as OmegaConf understands it (tuples as lists, anything else
    OmegaConf cannot check, such as unions and literals, as ``Any``)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint in (bool, int, float, str):
        return hint
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and len(rest) < len(args):
            inner = _schema_type(rest[0])
            return Any if inner is Any else Optional[inner]  # noqa: UP045  (a runtime type for OmegaConf)
        return Any
    if origin in (tuple, list):
        item = _schema_type(args[0] if args and args[0] is not Ellipsis else Any)
        return list[item] if item in (bool, int, float, str) else list[Any]  # type: ignore[valid-type]
    return Any


def schema_of(cls: type) -> type:
    """A Hydra structured-config class with the init fields and defaults of the parameter
    dataclass ``cls`` (frozen dataclasses and tuples are not Hydra's; the checks stay in ``cls``)."""
    hints = typing.get_type_hints(cls)
    fields = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        kind = _schema_type(hints[f.name])
        if f.default is not dataclasses.MISSING:
            default = f.default
            as_list = isinstance(default, tuple)
            value = field(default_factory=lambda d=default: list(d)) if as_list else field(default=default)  # type: ignore[misc]
        else:
            value = field(default_factory=f.default_factory)
        fields.append((f.name, kind, value))
    return dataclasses.make_dataclass(f"{cls.__name__}Schema", fields)


@dataclass
class TaskConfig:
    """Which runner ``python -m wsol_bench`` executes."""

    name: str = "localise"  # localise | evaluate | train | class_model | sweep_report | figures | sanity


@dataclass
class EvaluateConfig:
    """``task=evaluate``: score an existing prediction file."""

    predictions: str | None = None
    format: str = "csv"  # csv | devkit | devkit_cls | scoremaps
    missing: str = "error"  # images without a guess: error | wrong (the devkit's) | skip


@dataclass
class TrainConfig:
    """``task=train``: classifier training on an ImageNet-style ``train/<wnid>/*`` folder."""

    train_dir: str | None = None
    val_dir: str | None = None  # same layout; or None to skip validation
    epochs: int = 90
    max_steps: int | None = None  # stop after this many optimiser steps (smoke runs)
    batch_size: int = 128
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "step"  # step | cosine
    step_size: int = 30  # epochs between x0.1 decays (step schedule)
    crop: int = 224
    amp: bool = True  # mixed precision on GPU
    num_workers: int = 4
    resume: bool = False
    checkpoint_dir: str = "checkpoints"
    seed: int = 0
    progress: bool = True  # a progress bar per epoch (rank 0; only when stderr is a terminal)
    log_seconds: float = 30.0  # train_steps.csv rewritten at most this often within an epoch (0: every step)


@dataclass
class ClassModelConfig:
    """``task=class_model``: class model visualisation (Section 2 of the paper)."""

    classes: list[str] = field(default_factory=lambda: ["n01855672", "n01518878", "n03255030"])
    l2: float = 0.01  # lambda of the L2 penalty
    lr: float = 1.0
    steps: int = 200
    size: int = 224
    blur_every: int = 0  # 0: no blur (the paper's plain method)
    blur_sigma: float = 0.5
    jitter: int = 0  # pixels of random shift per step; 0: off
    seed: int = 0
    grid_columns: int = 4


@dataclass
class SweepConfig:
    """``task=sweep_report``: collect runs into one table and plot (:mod:`wsol_bench.reports.sweep`)."""

    dir: str | None = None  # a multirun folder, a folder of runs (outputs/localise) or one run
    dirs: list[str] | None = None  # or several of those (outputs go into this task's run folder)
    x: str | None = None  # the setting to plot on the x axis (default: a swept setting of the method, numeric first)


DatasetSchema = schema_of(DatasetSpec)
ModelSchema = schema_of(ModelSpec)
TtaSchema = schema_of(CropSettings)
EngineSchema = schema_of(EngineSettings)
RunSchema = schema_of(RunSettings)
EnsembleSchema = schema_of(EnsembleSettings)
SanitySchema = schema_of(SanitySettings)


@dataclass
class Config:
    task: TaskConfig = field(default_factory=TaskConfig)
    dataset: Any = field(default_factory=DatasetSchema)
    model: Any = field(default_factory=ModelSchema)
    saliency: dict[str, Any] = field(default_factory=dict)
    tta: Any = field(default_factory=TtaSchema)
    ensemble: Any = field(default_factory=EnsembleSchema)
    segmentation: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    engine: Any = field(default_factory=EngineSchema)
    run: Any = field(default_factory=RunSchema)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    class_model: ClassModelConfig = field(default_factory=ClassModelConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    sanity: Any = field(default_factory=SanitySchema)
    run_dir: str | None = None  # task=figures: the run whose figures to redraw
    runs: list[str] | None = None  # task=figures: runs whose maps to compare side by side


RANK_DIR_PREFIX = "wsol_bench_rank"


def hydra_run_dir(path: str) -> str:
    """Hydra's run folder: ``path`` for a single process and rank 0; a temporary folder for
    the other ranks of a torchrun job (removed when the rank ends), since they write into
    rank 0's folder and their timestamps differ."""
    import os
    import tempfile

    rank = int(os.environ.get("RANK", "0"))
    if rank == 0:
        return path
    return os.path.join(tempfile.gettempdir(), f"{RANK_DIR_PREFIX}{rank}_{os.getpid()}")


def shared_path(relative: str) -> str:
    """``${wsol_shared:PATH}``: ``PATH`` inside the shared data folder, absolute: the folder
    ``$WSOL_BENCH_SHARED`` names, else ``../shared`` beside the checkout this package runs
    from (``dataset=shared_sample`` works from any directory)."""
    import os
    from pathlib import Path

    base = os.environ.get("WSOL_BENCH_SHARED")
    if not base:
        checkout = Path(__file__).resolve().parents[1]
        base = str(checkout.parent / "shared") if (checkout / "pyproject.toml").is_file() else "../shared"
    return os.path.abspath(os.path.join(base, relative))


def register_configs() -> None:
    """Register the schema as ``wsol_bench_schema`` (first entry of conf/config.yaml's
    defaults) and the resolvers the Hydra settings use."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    schema = OmegaConf.structured(Config)
    for key in OPEN_SECTIONS:  # a method's parameter needs no "+" (the factory checks it)
        OmegaConf.set_struct(schema[key], False)
    OmegaConf.set_struct(schema.sanity.params, False)  # sanity.params.<method>.<key>, checked by the method
    ConfigStore.instance().store(name="wsol_bench_schema", node=schema)
    for name, resolver in (("wsol_run_dir", hydra_run_dir), ("wsol_shared", shared_path)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)
