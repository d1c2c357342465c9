"""Reading weight files safely, and identifying weights for cache keys and run manifests.

Every file is read with ``torch.load(..., weights_only=True)`` (or ``safetensors``): a file
that holds anything but tensors and plain containers is refused, never unpickled.
"""

from __future__ import annotations

import contextlib
import hashlib
import pickle
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from wsol_bench.files import sha256_file

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def file_weights_id(path: str | Path) -> str:
    """``'sha256:<first 16 hex digits>'`` of a file (memoised on path, size and mtime)."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = "sha256:" + sha256_file(p)[:16]
    return _SHA_CACHE[key]


def random_weights_id(seed: int) -> str:
    """Weights id of a random initialisation."""
    return f"random:seed{int(seed)}"


def state_digest(module: torch.nn.Module) -> str:
    """``'state:<16 hex>'``: a digest of a module's parameters and buffers (names, shapes, values)."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return "state:" + digest.hexdigest()[:16]


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``path`` onto the CPU, safely.

    ``.safetensors`` files are read with safetensors; anything else with
    ``torch.load(..., weights_only=True)``. Accepts a bare state dict or a checkpoint dict
    holding it under ``'model'`` (the training runner's format) or ``'state_dict'``; strips
    a ``module.`` (DDP) or ``_orig_mod.`` (``torch.compile``) prefix shared by all keys.
    Errors name the file: missing, truncated or corrupt, or refused because it holds
    objects other than tensors (it is not unpickled, for safety).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"model.weights: no file at {p.resolve()}")
    obj: Any
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            obj = load_file(str(p), device="cpu")
        except Exception as err:  # safetensors raises its own error types
            raise ValueError(f"model.weights: {p} is not a readable safetensors file ({err})") from None
    else:
        try:
            obj = torch.load(p, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            first = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
            raise ValueError(
                f"model.weights: {p} was refused: it holds Python objects other than tensors, and "
                f"wsol_bench loads weights with weights_only=True for safety ({first[:200]}). "
                "Save a plain state dict: torch.save(model.state_dict(), path)"
            ) from None
        except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as err:
            raise ValueError(f"model.weights: {p} is truncated or not a torch weights file "
                             f"({type(err).__name__}: {str(err)[:200]})") from None
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


def load_weights_into(module: torch.nn.Module, path: str | Path, name: str) -> torch.nn.Module:
    """Load the state dict file ``path`` into ``module`` (strict); errors name the file and model."""
    state = load_state_dict_file(path)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        lines = str(err).splitlines()
        raise ValueError(f"model.weights: {path} does not fit {name}: {' '.join(lines[:3])[:600]}") from None
    return module


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the body with torch's CPU RNG seeded, restoring the global RNG state afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield
