"""On-disk cache of saliency results, so runs that change only the box extractor (a Hydra
sweep over quantiles, say) read maps instead of recomputing them.

An entry is a compressed ``.npz`` named by the hash of its key and holding that key: the
namespace (model and weights identity, the method's name and every parameter, the crop
settings), the image id, the SHA-256 of the image file's bytes (so a copied data set still
hits) and the extra classes. A read checks the stored key and the arrays' shapes; an
entry that is unreadable, holds another key or has wrong shapes is a miss and is
rewritten. Writes are atomic; a failed write (read-only or full disk) is a warning.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wsol_bench.boxes import Size
from wsol_bench.files import atomic_write
from wsol_bench.saliency.image_saliency import SaliencyResult

log = logging.getLogger(__name__)


class SaliencyCache:
    """A folder of saliency results; ``namespace`` fixes everything but the image."""

    def __init__(self, directory: str | Path, namespace: dict[str, Any]) -> None:
        self.directory = Path(directory)
        self.namespace = json.dumps(namespace, sort_keys=True)
        self.hits = 0
        self.misses = 0
        self.write_failures = 0

    def _key(self, image_id: str, content_sha256: str, extra_classes: Sequence[int]) -> str:
        return json.dumps([self.namespace, image_id, content_sha256, sorted(int(c) for c in extra_classes)])

    def _path(self, key: str) -> Path:
        digest = hashlib.sha256(key.encode()).hexdigest()
        return self.directory / digest[:2] / f"{digest}.npz"

    def get(
        self, image_id: str, content_sha256: str, extra_classes: Sequence[int], frame: Size, top_k: int
    ) -> SaliencyResult | None:
        """The stored result, or ``None`` (a miss) if absent, unreadable or not this entry's."""
        key = self._key(image_id, content_sha256, extra_classes)
        try:
            with np.load(self._path(key), allow_pickle=False) as data:
                stored_key = str(data["key"])
                result = SaliencyResult(logits=data["logits"], classes=data["classes"], maps=data["maps"])
        except (FileNotFoundError, OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError):
            self.misses += 1
            return None
        if stored_key != key or not _shapes_ok(result, frame, top_k, extra_classes):
            log.warning("saliency cache: %s holds another or a malformed entry; recomputing %s",
                        self._path(key), image_id)
            self.misses += 1
            return None
        self.hits += 1
        return result

    def put(self, image_id: str, content_sha256: str, extra_classes: Sequence[int], result: SaliencyResult) -> None:
        key = self._key(image_id, content_sha256, extra_classes)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, key=np.array(key), logits=result.logits, classes=result.classes, maps=result.maps)
        try:
            atomic_write(self._path(key), buffer.getvalue(), fsync=False)
        except OSError as err:
            self.write_failures += 1
            if self.write_failures == 1:
                log.warning("saliency cache: cannot write into %s (%s); going on without caching",
                            self.directory, err)


def _shapes_ok(result: SaliencyResult, frame: Size, top_k: int, extra_classes: Sequence[int]) -> bool:
    k = len(result.classes)
    return (
        result.logits.ndim == 1
        and result.classes.ndim == 1
        and top_k <= k <= top_k + len(extra_classes)
        and set(int(c) for c in extra_classes) <= set(int(c) for c in result.classes)
        and result.maps.shape == (k, *frame)
        and result.maps.dtype == np.float32
    )
