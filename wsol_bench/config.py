"""The Hydra configuration schema (the only module besides the task runners that knows Hydra).

Every YAML file under ``conf/`` is merged onto these dataclasses, so a misspelt key or a
value of the wrong type in a typed section fails in Hydra with a message naming the key.
The ``saliency``, ``segmentation`` and ``evaluation`` sections are open mappings: their
keys depend on the chosen method (``conf/saliency/<method>.yaml`` lists them), and
:mod:`wsol_bench.tasks.factory` checks every key, type and range against the method's
own parameter dataclass before any model or data is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass
class TaskConfig:
    """Which runner ``python -m wsol_bench`` executes."""

    name: str = "localise"  # localise | evaluate | train | class_model | sweep_report | figures | sanity


@dataclass
class DatasetConfig:
    """Where images and ground truth live (:class:`wsol_bench.data.sources.DatasetSpec`)."""

    name: str = "demo"
    root: Optional[str] = None
    images: Optional[str] = None
    annotations: Optional[str] = None
    solution_csv: Optional[str] = None
    synset_mapping: Optional[str] = None
    devkit_meta: Optional[str] = None
    devkit_labels: Optional[str] = None
    blacklist: Optional[str] = None
    limit: Optional[int] = None
    image_ids: Optional[list[str]] = None
    max_pixels: Optional[int] = 178_956_970  # larger images are recorded as failed (null: no limit)
    num_workers: Optional[int] = None  # DataLoader decode/resize processes per rank; null: 0 on a CPU, 2 on a GPU
    demo_dir: str = "outputs/.demo_images"  # where the demo photographs are copied (dataset=demo)


@dataclass
class ModelConfig:
    """The classifier (:class:`wsol_bench.models.ModelSpec`)."""

    name: str = "efficientnet_lite0"
    arch: Optional[str] = None
    factory: Optional[str] = None
    weights: Optional[str] = None
    allow_download: bool = False
    num_classes: int = 1000
    seed: int = 0
    device: str = "auto"
    mean: Optional[list[float]] = None
    std: Optional[list[float]] = None
    target_layer: Optional[str] = None


@dataclass
class EvaluateConfig:
    """``task=evaluate``: score an existing prediction file."""

    predictions: Optional[str] = None
    format: str = "csv"  # csv | devkit | devkit_cls | scoremaps
    missing: str = "error"  # images without a guess: error | wrong (the devkit's) | skip


@dataclass
class RunConfig:
    """Per-run behaviour of the localisation runner."""

    resume: bool = False
    figures: int = 8  # figures for the first N images
    progress: bool = True
    save_maps: bool = False  # write scoremaps/<image_id>.npy + metadata (wsolevaluation's layout)
    processes: str = "auto"  # auto (every core, or every GPU) | N ranks (wsol_bench.pipeline.launch)


@dataclass
class TrainConfig:
    """``task=train``: classifier training on an ImageNet-style ``train/<wnid>/*`` folder."""

    train_dir: Optional[str] = None
    val_dir: Optional[str] = None  # same layout; or None to skip validation
    epochs: int = 90
    max_steps: Optional[int] = None  # stop after this many optimiser steps (smoke runs)
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

    dir: Optional[str] = None  # a multirun folder, a folder of runs (outputs/localise) or one run
    dirs: Optional[list[str]] = None  # or several of those (outputs go into this task's run folder)
    x: Optional[str] = None  # the setting to plot on the x axis (default: first swept key)


@dataclass
class SanityConfig:
    """``task=sanity``: the model-parameter randomisation test (:class:`wsol_bench.sanity.SanitySettings`)."""

    methods: list[str] = field(default_factory=lambda: ["gradient", "guided_backprop", "gradcam"])
    mode: str = "cascading"  # cascading | independent | both
    seed: int = 0  # seed of the re-initialisations
    figures: int = 1  # images whose maps are drawn (sanity.png is the first)
    resize: int = 256  # shorter side of the resized image
    crop: int = 224  # its centre crop, where the maps are computed and compared
    batch_images: int = 4  # images per saliency call
    params: dict[str, Any] = field(default_factory=dict)  # per method: its parameters (smoothgrad: the tunnel's)


@dataclass
class Config:
    task: TaskConfig = field(default_factory=TaskConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    saliency: dict[str, Any] = field(default_factory=dict)
    segmentation: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    run: RunConfig = field(default_factory=RunConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    class_model: ClassModelConfig = field(default_factory=ClassModelConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    sanity: SanityConfig = field(default_factory=SanityConfig)
    run_dir: Optional[str] = None  # task=figures: the run whose figures to redraw
    runs: Optional[list[str]] = None  # task=figures: runs whose maps to compare side by side


def hydra_output_subdir(resume: object) -> str:
    """Where Hydra writes its ``.hydra`` files: ``.hydra`` for a new run; beside it,
    ``.hydra-resume-<time>``, for a resumed one, so the original run's config is kept."""
    import datetime

    if str(resume).lower() in ("true", "1"):
        return ".hydra-resume-" + datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    return ".hydra"


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


def register_configs() -> None:
    """Register the schema as ``wsol_bench_schema`` (first entry of conf/config.yaml's
    defaults) and the resolvers the Hydra settings use."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    ConfigStore.instance().store(name="wsol_bench_schema", node=Config)
    for name, resolver in (("wsol_hydra_subdir", hydra_output_subdir), ("wsol_run_dir", hydra_run_dir)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)
