"""Typed configuration schema, registered in Hydra's ConfigStore.

Every YAML file under ``conf/`` is merged onto these dataclasses, so a misspelt
key or a value of the wrong type fails in Hydra with a message that names the
key, before any of the pipeline runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from hydra.core.config_store import ConfigStore


@dataclass
class TaskConfig:
    """Which runner ``python -m wsol_bench`` executes."""

    name: str = "localise"  # localise | evaluate | train | class_model | sweep_report


@dataclass
class DatasetConfig:
    """Where images and ground truth live. Paths may be relative to the launch directory."""

    name: str = "demo"
    root: Optional[str] = None  # a devkit or Kaggle ILSVRC download; fills the paths below
    images: Optional[str] = None  # folder of images; evaluated in sorted file-name order
    annotations: Optional[str] = None  # folder of per-image ILSVRC XML files
    solution_csv: Optional[str] = None  # Kaggle LOC_val_solution.csv
    synset_mapping: Optional[str] = None  # LOC_synset_mapping.txt (sorted-WNID order, names)
    devkit_meta: Optional[str] = None  # devkit meta.mat (ILSVRC2012_ID order)
    devkit_labels: Optional[str] = None  # ILSVRC2012_validation_ground_truth.txt
    blacklist: Optional[str] = None  # devkit clsloc_validation_blacklist (1-based indices)
    limit: Optional[int] = None  # keep the first N images (sorted file-name order)
    image_ids: Optional[list[str]] = None  # keep exactly these image ids
    num_workers: int = 2  # DataLoader decode/resize worker processes
    prepare_demo: bool = False  # copy the demo photographs out of installed packages


@dataclass
class ModelConfig:
    """A classifier mapping a normalised RGB batch to 1000 logits in sorted-WNID order."""

    name: str = "efficientnet_lite0"  # efficientnet_lite0 | alexnet | vgg16 | resnet50 | paper_convnet
    weights: Optional[str] = None  # None: the model's default source; "random"; or a file path
    allow_download: bool = False  # let torchvision download weights into TORCH_HOME
    num_classes: int = 1000
    seed: int = 0  # initialisation seed for weights=random
    device: str = "auto"  # auto | cpu | cuda | cuda:N


@dataclass
class SaliencyConfig:
    """Image-specific class saliency (Section 3 of the paper)."""

    method: str = "gradient"
    resize: int = 256  # shorter side of the resized frame
    crop: int = 224  # square crop side
    crops: int = 10  # 10 (4 corners + centre, and reflections) or 1 (centre)
    top_k: int = 5  # classes per image, by mean logit over the crops
    batch_images: int = 1  # images per forward/backward graph (CPU: 1 is fastest, measured; GPU: raise it)
    cache: bool = True  # store maps on disk, keyed by model, weights, preprocessing, image
    cache_dir: str = "outputs/.saliency_cache"


@dataclass
class SegmentationConfig:
    """Turning a saliency map into a box (Section 3.1 of the paper), and baselines.

    The defaults are the settings tuned on real validation images (docs/tuning.md):
    the paper's method with a smoothed map, 90% foreground quantile, segmentation at a
    160-pixel longer side and all foreground components kept. ``+experiment=ilsvrc2013``
    restores the paper's published settings (95%, no smoothing, full frame, largest).
    """

    method: str = "graphcut"  # graphcut | grabcut | threshold | full_image | center
    fg_quantile: float = 0.90  # foreground seeds: saliency >= this quantile of the map (paper: 0.95)
    bg_quantile: float = 0.30  # background seeds: saliency <= this quantile
    gmm_components: int = 5
    pairwise_weight: float = 50.0  # gamma of the contrast-sensitive Potts term
    hard_seeds: bool = True
    max_side: Optional[int] = 160  # segment at this longer side (None: the saliency frame, as the paper)
    smooth_sigma: float = 8.0  # Gaussian blur of the map (pixels of the saliency frame) before the quantiles (paper: 0)
    keep_components: str = "all"  # all foreground components | largest (the paper)
    grabcut_iterations: int = 5
    threshold: float = 0.2  # threshold method: fraction of the map's maximum
    center_fraction: float = 0.75  # center method: box side as a fraction of the image side
    seed: int = 0  # seeds the GMM initialisation
    workers: int = 0  # CPU processes for segmentation (0: in the main process)


@dataclass
class EvaluateConfig:
    """``task=evaluate``: score an existing prediction file."""

    predictions: Optional[str] = None
    format: str = "csv"  # csv | devkit
    iou_threshold: float = 0.5


@dataclass
class RunConfig:
    """Per-run behaviour of the localisation runner."""

    resume: bool = False
    figures: int = 8  # figures for the first N images
    seed: int = 0
    progress: bool = True


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
    """``task=sweep_report``: collect a Hydra multirun folder into one table and plot."""

    dir: Optional[str] = None
    x: Optional[str] = None  # the override to plot on the x axis (default: first swept key)


@dataclass
class Config:
    task: TaskConfig = field(default_factory=TaskConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    saliency: SaliencyConfig = field(default_factory=SaliencyConfig)
    segmentation: SegmentationConfig = field(default_factory=SegmentationConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    run: RunConfig = field(default_factory=RunConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    class_model: ClassModelConfig = field(default_factory=ClassModelConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)


def register_configs() -> None:
    """Register the schema as ``wsol_bench_schema`` (first entry of conf/config.yaml's defaults)."""
    cs = ConfigStore.instance()
    cs.store(name="wsol_bench_schema", node=Config)
