"""The one place where objects are built from the Hydra config.

:func:`localisation_plan` reads every section a localisation run uses and checks every
key, type and range (through the parts' own parameter dataclasses) before any model or
data is loaded; messages name the key, its value and what is allowed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from wsol_bench.data.sources import PATH_KEYS, DatasetSpec
from wsol_bench.metrics import METRICS, Evaluator
from wsol_bench.models import Classifier, ModelSpec
from wsol_bench.pipeline.engine import EngineSettings
from wsol_bench.pipeline.launch import loader_workers_for, parse_processes, segmentation_workers_for
from wsol_bench.registry import make_params
from wsol_bench.saliency import SALIENCY_METHODS, CropSettings, SaliencyMethod, saliency_method
from wsol_bench.segmentation import BOX_EXTRACTORS, BoxExtractor

#: keys of the ``saliency`` section that are not the method's parameters
SALIENCY_ENGINE_KEYS = ("batch_images", "cache", "cache_dir", "fold_batchnorm")
CROP_KEYS = ("resize", "crop", "crops", "top_k")
SEGMENTATION_ENGINE_KEYS = ("workers",)
SCOREMAPS_DIR = "scoremaps"  # inside the run folder (run.save_maps=true)


def section(cfg: DictConfig, key: str) -> dict[str, Any]:
    """``cfg[key]`` as plain Python values (interpolations resolved)."""
    node = cfg.get(key)
    return {} if node is None else dict(OmegaConf.to_container(node, resolve=True))  # type: ignore[arg-type]


def dataset_spec(cfg: DictConfig) -> DatasetSpec:
    values = {k: v for k, v in section(cfg, "dataset").items() if k not in ("num_workers", "demo_dir")}
    if values.get("image_ids") is not None:
        values["image_ids"] = tuple(values["image_ids"])
    return make_params(DatasetSpec, values, "dataset")


def resolve_demo(spec: DatasetSpec, demo_dir: str) -> DatasetSpec:
    """``dataset=demo`` without any path of the user's: the demo photographs, copied into
    ``demo_dir`` (a folder the harness owns), and their packaged annotations. Any path set
    means the user's own data: the demo is not used."""
    if spec.name != "demo" or spec.user_paths:
        return spec
    from dataclasses import replace

    from wsol_bench.data.demo import demo_annotations_dir, prepare_demo_images

    prepare_demo_images(demo_dir)
    return replace(spec, images=str(demo_dir), annotations=str(demo_annotations_dir()))


def model_spec(cfg: DictConfig) -> ModelSpec:
    values = section(cfg, "model")
    for key in ("mean", "std"):
        if values.get(key) is not None:
            values[key] = tuple(values[key])
    return make_params(ModelSpec, values, "model")


def saliency_parts(cfg: DictConfig) -> tuple[SaliencyMethod, CropSettings, dict[str, Any]]:
    """The saliency method (with its parameters), the crop settings, and the engine keys."""
    values = section(cfg, "saliency")
    name = values.pop("method", None)
    if not name:
        raise ValueError(f"saliency.method is not set (one of {', '.join(SALIENCY_METHODS.names())})")
    engine = {k: values.pop(k) for k in SALIENCY_ENGINE_KEYS if k in values}
    crops = make_params(CropSettings, {k: values.pop(k) for k in CROP_KEYS if k in values}, "saliency")
    method = saliency_method(str(name), values.pop("noise_tunnel", None), **values)
    return method, crops, engine


def box_extractor_from(cfg: DictConfig) -> tuple[BoxExtractor, dict[str, Any]]:
    """The box extractor (with its parameters) and the engine keys of ``segmentation``."""
    values = section(cfg, "segmentation")
    name = values.pop("method", None)
    if not name:
        raise ValueError(f"segmentation.method is not set (one of {', '.join(BOX_EXTRACTORS.names())})")
    engine = {k: values.pop(k) for k in SEGMENTATION_ENGINE_KEYS if k in values}
    return BOX_EXTRACTORS.create(str(name), values, "segmentation"), engine


def evaluators_from(cfg: DictConfig) -> tuple[Evaluator, ...]:
    """The evaluators named by ``evaluation.metrics``, each with its ``evaluation.<name>`` settings."""
    values = section(cfg, "evaluation")
    names = values.pop("metrics", None) or ["ilsvrc"]
    unknown = sorted(set(values) - set(names) - set(METRICS.names()))  # settings of unused metrics are kept
    if unknown:
        raise ValueError(f"evaluation.{unknown[0]}: not a metric (known: {', '.join(METRICS.names())}); "
                         "evaluation.metrics lists the metrics to run")
    evaluators = []
    for name in names:
        params = values.get(name) or {}
        if not isinstance(params, Mapping):
            raise ValueError(f"evaluation.{name}={params!r}: must be a mapping of the metric's settings")
        evaluators.append(METRICS.create(str(name), params, f"evaluation.{name}"))
    return tuple(evaluators)


@dataclass(frozen=True)
class LocalisationPlan:
    """Everything a localisation run is built from, checked; nothing loaded yet."""

    dataset: DatasetSpec
    model: ModelSpec
    method: SaliencyMethod
    crops: CropSettings
    extractor: BoxExtractor
    evaluators: tuple[Evaluator, ...]
    engine: EngineSettings
    fold_batchnorm: bool = True  # saliency.fold_batchnorm: fold BatchNorms into convolutions (a copy)
    processes: int | None = None  # run.processes: None = auto (wsol_bench.pipeline.launch)

    def saliency_classifier(self) -> Classifier:
        """Load the classifier as the run's saliency sees it: BatchNorm-folded when the plan says so
        (a folded model has its own identity, hence its own saliency-cache entries)."""
        from wsol_bench.models import build_classifier
        from wsol_bench.models.batchnorm import fold_batchnorm

        classifier = build_classifier(self.model)
        return fold_batchnorm(classifier) if self.fold_batchnorm else classifier


def localisation_plan(cfg: DictConfig) -> LocalisationPlan:
    """Check and build every part of a localisation run from ``cfg``."""
    method, crops, sal_engine = saliency_parts(cfg)
    extractor, seg_engine = box_extractor_from(cfg)
    run = section(cfg, "run")
    processes = parse_processes(run.get("processes", "auto"))
    fold = sal_engine.get("fold_batchnorm", True)
    if not isinstance(fold, bool):
        raise ValueError(f"saliency.fold_batchnorm={fold!r}: must be true or false")
    device = section(cfg, "model").get("device", "auto")
    workers = seg_engine.get("workers", 0)
    if str(workers).lower() == "auto":
        workers = segmentation_workers_for(device, processes)
    loaders = section(cfg, "dataset").get("num_workers")
    settings = {  # engine field -> (config key, value)
        "batch_images": ("saliency.batch_images", sal_engine.get("batch_images", 1)),
        "cache_dir": ("saliency.cache_dir", sal_engine.get("cache_dir") if sal_engine.get("cache", True) else None),
        "segmentation_workers": ("segmentation.workers", workers),
        "loader_workers": ("dataset.num_workers", loaders if loaders is not None else loader_workers_for(device)),
        "figures": ("run.figures", run.get("figures", 8)),
        "progress": ("run.progress", run.get("progress", True)),
        "resume": ("run.resume", run.get("resume", False)),
        "scoremaps_dir": ("run.save_maps", SCOREMAPS_DIR if run.get("save_maps", False) else None),
    }
    try:
        engine = make_params(EngineSettings, {k: v for k, (_, v) in settings.items()}, "")
    except ValueError as err:  # name the key as the config spells it
        message = str(err).lstrip(".")
        field_name = message.split("=", 1)[0]
        key = settings[field_name][0] if field_name in settings else field_name
        raise ValueError(key + message[len(field_name):]) from None
    return LocalisationPlan(dataset_spec(cfg), model_spec(cfg), method, crops, extractor, evaluators_from(cfg), engine,
                            fold, processes)


__all__ = ["PATH_KEYS", "LocalisationPlan", "dataset_spec", "evaluators_from", "localisation_plan", "model_spec",
           "resolve_demo", "section"]
