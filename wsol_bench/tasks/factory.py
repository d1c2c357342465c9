"""The one place where objects are built from the Hydra config.

:func:`localisation_plan` reads every section a localisation run uses and checks every
key, type and range (through the parts' own parameter dataclasses) before any model or
data is loaded; messages name the key, its value and what is allowed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from wsol_bench.data.sources import PATH_KEYS, DatasetSpec
from wsol_bench.metrics import METRICS, Evaluator
from wsol_bench.models import ModelSpec
from wsol_bench.pipeline.run import LocalisationPlan, LocaliserSpec
from wsol_bench.pipeline.settings import EngineSettings, RunSettings
from wsol_bench.registry import make_params
from wsol_bench.saliency import (
    SALIENCY_METHODS,
    CropSettings,
    SaliencyMethod,
    saliency_method,
)
from wsol_bench.saliency.ensemble import EnsembleSettings
from wsol_bench.segmentation import BOX_EXTRACTORS, BoxExtractor


def section(cfg: DictConfig, key: str) -> dict[str, Any]:
    """``cfg[key]`` as plain Python values (interpolations resolved)."""
    node = cfg.get(key)
    return {} if node is None else dict(OmegaConf.to_container(node, resolve=True))  # type: ignore[arg-type]


def dataset_spec(cfg: DictConfig) -> DatasetSpec:
    """The ``dataset`` section, checked, with every path made absolute (a run stores them so)."""
    values = section(cfg, "dataset")
    if values.get("image_ids") is not None:
        values["image_ids"] = tuple(values["image_ids"])
    for key in (*PATH_KEYS, "root", "demo_dir"):
        if values.get(key):
            values[key] = os.path.abspath(os.path.expanduser(str(values[key])))
    return make_params(DatasetSpec, values, "dataset")


def with_absolute_paths(cfg: DictConfig) -> DictConfig:
    """A copy of ``cfg`` whose data and cache paths are absolute (what a run stores in its
    ``.hydra/config.yaml``, so ``task=figures`` and resumes work from any directory)."""
    out = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    assert isinstance(out, DictConfig)
    for key in (*PATH_KEYS, "root", "demo_dir"):
        if out.dataset.get(key):
            out.dataset[key] = os.path.abspath(os.path.expanduser(str(out.dataset[key])))
    if out.get("engine") is not None and out.engine.get("cache_dir"):
        out.engine.cache_dir = os.path.abspath(os.path.expanduser(str(out.engine.cache_dir)))
    return out


def resolve_demo(spec: DatasetSpec) -> DatasetSpec:
    """``dataset=demo`` without any path of the user's: the demo photographs, copied into
    ``dataset.demo_dir`` (a folder the harness owns), and their packaged annotations. Any
    path set means the user's own data: the demo is not used."""
    if spec.name != "demo" or spec.user_paths:
        return spec
    from wsol_bench.data.demo import demo_annotations_dir, prepare_demo_images

    prepare_demo_images(spec.demo_dir)
    return replace(spec, images=str(Path(spec.demo_dir)), annotations=str(demo_annotations_dir()))


def model_spec(cfg: DictConfig) -> ModelSpec:
    values = section(cfg, "model")
    for key in ("mean", "std"):
        if values.get(key) is not None:
            values[key] = tuple(values[key])
    return make_params(ModelSpec, values, "model")


def saliency_from(cfg: DictConfig) -> SaliencyMethod:
    """The saliency method of ``saliency.method`` with its parameters (and noise tunnel)."""
    values = section(cfg, "saliency")
    name = values.pop("method", None)
    if not name:
        raise ValueError(f"saliency.method is not set (one of {', '.join(SALIENCY_METHODS.names())})")
    return saliency_method(str(name), values.pop("noise_tunnel", None), **values)


def box_extractor_from(cfg: DictConfig) -> BoxExtractor:
    """The box extractor of ``segmentation.method`` with its parameters."""
    values = section(cfg, "segmentation")
    name = values.pop("method", None)
    if not name:
        raise ValueError(f"segmentation.method is not set (one of {', '.join(BOX_EXTRACTORS.names())})")
    return BOX_EXTRACTORS.create(str(name), values, "segmentation")


def localisers_from(cfg: DictConfig) -> tuple[tuple[LocaliserSpec, ...], bool]:
    """The ``ensemble`` section: its localisers (each a ``model`` section, a ``tta`` section
    and optionally a ``saliency`` section, checked as the run's own) and ``own_maps``."""
    values = section(cfg, "ensemble")
    values["localisers"] = tuple(values.get("localisers") or ())
    settings = make_params(EnsembleSettings, values, "ensemble")
    specs = []
    for i, entry in enumerate(settings.localisers):
        where = f"ensemble.localisers[{i}]"
        unknown = sorted(set(entry) - {"model", "tta", "saliency"})
        if unknown:
            raise ValueError(f"{where}.{unknown[0]}: not a key of a localiser (model, tta, saliency)")
        model = {k: tuple(v) if k in ("mean", "std") and v is not None else v
                 for k, v in dict(entry.get("model") or {}).items()}
        method = None
        if entry.get("saliency"):
            params = dict(entry["saliency"])
            name = params.pop("method", None)
            if not name:
                raise ValueError(f"{where}.saliency.method is not set")
            method = saliency_method(str(name), params.pop("noise_tunnel", None), **params)
        specs.append(LocaliserSpec(make_params(ModelSpec, model, f"{where}.model"),
                                   make_params(CropSettings, dict(entry.get("tta") or {}), f"{where}.tta"), method))
    return tuple(specs), settings.own_maps


def metric_key(name: str) -> str:
    """Where a metric's settings live in ``evaluation``: its name, or for ``pkg.mod:Class``
    the class's ``name`` (else the class name), since Hydra keys cannot hold ``:``."""
    if ":" not in name:
        return name
    cls = METRICS.get(name)
    return getattr(cls, "name", "") or name.rpartition(":")[2]


def evaluators_from(cfg: DictConfig) -> tuple[Evaluator, ...]:
    """The evaluators named by ``evaluation.metrics``, each with its ``evaluation.<key>``
    settings (:func:`metric_key`)."""
    values = section(cfg, "evaluation")
    names = [str(n) for n in (values.pop("metrics", None) or ["ilsvrc"])]
    keys = {name: metric_key(name) for name in names}
    unknown = sorted(set(values) - set(keys.values()) - set(METRICS.names()))  # settings of unused metrics are kept
    if unknown:
        raise ValueError(f"evaluation.{unknown[0]}: not a metric (known: {', '.join(METRICS.names())}, or the metrics "
                         f"listed: {', '.join(keys.values())}); evaluation.metrics lists the metrics to run")
    evaluators = []
    for name in names:
        params = values.get(keys[name]) or {}
        if not isinstance(params, Mapping):
            raise ValueError(f"evaluation.{keys[name]}={params!r}: must be a mapping of the metric's settings")
        evaluators.append(METRICS.create(name, params, f"evaluation.{keys[name]}"))
    return tuple(evaluators)


def _engine_settings(cfg: DictConfig) -> EngineSettings:
    values = section(cfg, "engine")
    if values.get("cache_dir"):
        values["cache_dir"] = os.path.abspath(os.path.expanduser(str(values["cache_dir"])))
    return make_params(EngineSettings, values, "engine")


def localisation_plan(cfg: DictConfig) -> LocalisationPlan:
    """Check and build every part of a localisation run from ``cfg`` (nothing is loaded)."""
    localisers, own_maps = localisers_from(cfg)
    plan = LocalisationPlan(
        dataset=dataset_spec(cfg),
        model=model_spec(cfg),
        method=saliency_from(cfg),
        crops=make_params(CropSettings, section(cfg, "tta"), "tta"),
        extractor=box_extractor_from(cfg),
        evaluators=evaluators_from(cfg),
        engine=_engine_settings(cfg),
        run=make_params(RunSettings, section(cfg, "run"), "run"),
        localisers=localisers,
        own_maps=own_maps,
    )
    guesses = max((getattr(e, "max_guesses", 0) for e in plan.evaluators), default=0)
    if guesses > plan.crops.top_k:
        raise ValueError(f"tta.top_k={plan.crops.top_k} gives {plan.crops.top_k} guesses per image but "
                         f"evaluation.ilsvrc.max_guesses={guesses} scores {guesses}: set "
                         f"evaluation.ilsvrc.max_guesses={plan.crops.top_k} (or raise tta.top_k)")
    return plan


__all__ = ["PATH_KEYS", "box_extractor_from", "dataset_spec", "evaluators_from", "localisation_plan", "model_spec",
           "resolve_demo", "saliency_from", "section", "with_absolute_paths"]
