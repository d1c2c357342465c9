"""wsol_bench: saliency-based weakly supervised object localisation on ImageNet.

Public names (imported on first use, so ``import wsol_bench`` stays light):

* :func:`run` (a whole run on a data set), :func:`localise` (one image),
  :func:`load_ground_truth`, :func:`evaluate`, :func:`score_maps`, :func:`overlay`
  (:mod:`wsol_bench.api`);
* :func:`saliency_method`, :func:`box_extractor`, :func:`evaluator`: parts by name and parameters;
  :class:`NoiseTunnel` (any method over noisy copies), :func:`as_method` (captum,
  pytorch-grad-cam and plain functions as methods);
* :class:`Box`, :class:`ImageAnnotation`, :class:`Classifier`, :class:`ModelSpec`,
  :func:`build_classifier`, :class:`CropSettings`, :func:`image_saliency`;
* the registries :data:`SALIENCY_METHODS`, :data:`BOX_EXTRACTORS`, :data:`METRICS`, :data:`MODELS`;
* ``__version__``: the installed distribution's version (``importlib.metadata``); in an uninstalled
  checkout the version in its ``pyproject.toml``, else ``"0+unknown"``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

_EXPORTS = {
    "run": "wsol_bench.api",
    "RunResult": "wsol_bench.api",
    "localise": "wsol_bench.api",
    "Localised": "wsol_bench.api",
    "evaluate": "wsol_bench.api",
    "load_ground_truth": "wsol_bench.api",
    "score_maps": "wsol_bench.api",
    "overlay": "wsol_bench.api",
    "Box": "wsol_bench.boxes",
    "ImageAnnotation": "wsol_bench.boxes",
    "Classifier": "wsol_bench.models",
    "ModelSpec": "wsol_bench.models",
    "MODELS": "wsol_bench.models",
    "build_classifier": "wsol_bench.models",
    "wrap_module": "wsol_bench.models",
    "CropSettings": "wsol_bench.saliency",
    "EngineSettings": "wsol_bench.pipeline.settings",
    "DatasetSpec": "wsol_bench.data.sources",
    "SaliencyMethod": "wsol_bench.saliency",
    "SALIENCY_METHODS": "wsol_bench.saliency",
    "NoiseTunnel": "wsol_bench.saliency",
    "as_method": "wsol_bench.saliency",
    "image_saliency": "wsol_bench.saliency",
    "saliency_method": "wsol_bench.saliency",
    "BoxExtractor": "wsol_bench.segmentation",
    "BOX_EXTRACTORS": "wsol_bench.segmentation",
    "box_extractor": "wsol_bench.segmentation",
    "Evaluator": "wsol_bench.metrics",
    "METRICS": "wsol_bench.metrics",
    "evaluator": "wsol_bench.metrics",
}

__all__ = sorted(_EXPORTS)


def _version(source_root: Path = Path(__file__).resolve().parent.parent) -> str:
    """The installed version, else ``source_root/pyproject.toml``'s (if it names this project), else ``0+unknown``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("wsol_bench")
    except PackageNotFoundError:
        pass
    try:
        import tomllib

        project = tomllib.loads((source_root / "pyproject.toml").read_text())["project"]
        if project["name"] == "wsol_bench":
            return str(project["version"])
    except (ImportError, OSError, KeyError, TypeError, ValueError):  # no tomllib (3.10), no file, not ours
        pass
    return "0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        globals()["__version__"] = found = _version()  # looked up once, on first use
        return found
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'wsol_bench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS, "__version__"})
