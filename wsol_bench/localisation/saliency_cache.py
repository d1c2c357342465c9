"""On-disk cache of saliency results, so runs that change only segmentation settings
(a Hydra sweep over quantiles, say) read maps instead of recomputing them.

Entries are compressed ``.npz`` files keyed by a hash of the model name, the exact
weights, the preprocessing (resize, crop, crops, top-k, method), the image id, the
file's size and modification time, and any extra classes; writes are atomic, and an unreadable entry is a miss.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from wsol_bench.saliency.gradient import SaliencyResult


class SaliencyCache:
    """A folder of saliency results; ``namespace`` fixes model, weights and preprocessing."""

    def __init__(self, directory: str | Path, namespace: dict) -> None:
        self.directory = Path(directory)
        self.namespace = json.dumps(namespace, sort_keys=True)
        self.hits = 0
        self.misses = 0

    def _path(self, image_id: str, image_file: Path | None, extra_classes: list[int]) -> Path:
        stat = image_file.stat() if image_file is not None else None
        key = json.dumps(
            [self.namespace, image_id, (stat.st_size, stat.st_mtime_ns) if stat else None, sorted(extra_classes)],
            sort_keys=True,
        )
        digest = hashlib.sha256(key.encode()).hexdigest()
        return self.directory / digest[:2] / f"{digest}.npz"

    def get(self, image_id: str, image_file: Path | None, extra_classes: list[int]) -> SaliencyResult | None:
        path = self._path(image_id, image_file, extra_classes)
        try:
            with np.load(path) as data:
                result = SaliencyResult(
                    logits=data["logits"], classes=data["classes"], maps=data["maps"]
                )
        except (FileNotFoundError, OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError):
            self.misses += 1
            return None
        self.hits += 1
        return result

    def put(self, image_id: str, image_file: Path | None, extra_classes: list[int], result: SaliencyResult) -> None:
        path = self._path(image_id, image_file, extra_classes)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez_compressed(fh, logits=result.logits, classes=result.classes, maps=result.maps)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
