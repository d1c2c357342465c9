"""Any timm architecture: ``model=timm model.arch=NAME`` (e.g. ``resnet18``, ``convnext_tiny``).

Weights, in order of precedence:

* ``model.weights=PATH``: a state dict file (``.pth``/``.bin`` read with
  ``weights_only=True``, or ``.safetensors``);
* ``model.weights=random``: timm's random initialisation seeded with ``model.seed``;
* default: the architecture's pretrained file if it is already in the local Hugging Face
  cache (``~/.cache/huggingface/hub``, where timm puts downloads); downloaded only when
  ``model.allow_download=true``; otherwise an error naming the repository and file.

Normalisation: ``mean``/``std`` of the architecture's pretrained config (``model.mean``,
``model.std`` override them). CAM / Grad-CAM target layer: found automatically
(:func:`wsol_bench.models.feature_layer`) unless ``model.target_layer`` is set.
"""

from __future__ import annotations

from pathlib import Path

import torch

from wsol_bench.models import Classifier, ModelSpec
from wsol_bench.models.weights import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    file_weights_id,
    load_weights_into,
    random_weights_id,
    seeded,
)

CACHED_FILES = ("model.safetensors", "pytorch_model.bin")


def create_module(arch: str, num_classes: int = 1000, seed: int = 0) -> torch.nn.Module:
    """timm's ``arch`` with random weights seeded by ``seed`` (never downloads)."""
    import timm

    if not timm.is_model(arch):
        raise ValueError(f"model.arch={arch!r} is not a timm architecture (timm.list_models() lists them)")
    with seeded(seed):
        return timm.create_model(arch, pretrained=False, num_classes=num_classes)


def cached_weights(module: torch.nn.Module) -> tuple[Path | None, str]:
    """The pretrained file of ``module``'s architecture in the local Hugging Face cache, and
    a description of where it was looked for."""
    cfg = getattr(module, "pretrained_cfg", None) or {}
    repo = cfg.get("hf_hub_id")
    if not repo:
        return None, "its pretrained config names no Hugging Face repository"
    from huggingface_hub import try_to_load_from_cache

    for filename in CACHED_FILES:
        found = try_to_load_from_cache(repo, filename)
        if isinstance(found, str):
            return Path(found), f"{repo}/{filename}"
    return None, f"{repo}/{' or '.join(CACHED_FILES)} in the Hugging Face cache"


def build(spec: ModelSpec) -> Classifier:
    """The classifier on the CPU, in eval mode."""
    if not spec.arch:
        raise ValueError("model=timm needs model.arch=NAME (e.g. resnet18)")
    module = create_module(spec.arch, spec.num_classes, spec.seed)
    cfg = getattr(module, "pretrained_cfg", None) or {}
    mean = tuple(cfg.get("mean", IMAGENET_MEAN))
    std = tuple(cfg.get("std", IMAGENET_STD))
    if spec.weights == "random":
        weights_id = random_weights_id(spec.seed)
    elif spec.weights is not None:
        load_weights_into(module, spec.weights, spec.arch)
        weights_id = file_weights_id(spec.weights)
    else:
        path, where = cached_weights(module)
        if path is None:
            if not spec.allow_download:
                raise FileNotFoundError(
                    f"timm {spec.arch}: no local pretrained weights ({where}). Pass model.weights=PATH, "
                    "model.weights=random, or model.allow_download=true to let timm download them"
                )
            import timm

            with seeded(spec.seed):
                module = timm.create_model(spec.arch, pretrained=True, num_classes=spec.num_classes)
            path, where = cached_weights(module)
            weights_id = file_weights_id(path) if path else f"timm:{spec.arch}:{cfg.get('tag', 'pretrained')}"
        else:
            load_weights_into(module, path, spec.arch)
            weights_id = file_weights_id(path)
    return Classifier(module.eval(), mean, std, f"timm:{spec.arch}", weights_id, None)
