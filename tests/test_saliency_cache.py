"""The saliency cache checks what it reads and never stops a run."""

from __future__ import annotations

import logging

import numpy as np

from wsol_bench.saliency import SaliencyResult
from wsol_bench.saliency.cache import SaliencyCache

FRAME = (6, 8)


def result(value: float = 1.0, k: int = 3) -> SaliencyResult:
    return SaliencyResult(np.arange(10, dtype=np.float32), np.arange(k, dtype=np.int64),
                          np.full((k, *FRAME), value, np.float32))


def test_hit_is_keyed_on_content_not_on_the_file(tmp_path):
    cache = SaliencyCache(tmp_path, {"model": "m", "method": "gradient"})
    cache.put("img", "sha-of-bytes", [2], result())
    # the same bytes under the same id (a copied data set) hit; other bytes, classes or namespace miss
    assert cache.get("img", "sha-of-bytes", [2], FRAME, top_k=2).maps.max() == 1.0
    assert cache.get("img", "other-bytes", [2], FRAME, top_k=2) is None
    assert cache.get("img", "sha-of-bytes", [1], FRAME, top_k=2) is None
    other = SaliencyCache(tmp_path, {"model": "m", "method": "smoothgrad"})
    assert other.get("img", "sha-of-bytes", [2], FRAME, 2) is None
    assert (cache.hits, cache.misses) == (1, 2)


def test_wrong_shape_or_foreign_entry_is_a_miss_and_is_rewritten(tmp_path, caplog):
    cache = SaliencyCache(tmp_path, {"model": "m"})
    cache.put("img", "h", [2], result(k=3))
    assert cache.get("img", "h", [2], (6, 9), top_k=2) is None  # the image is now another size
    [entry] = list(tmp_path.rglob("*.npz"))
    other = SaliencyCache(tmp_path, {"model": "m"})
    other.put("other", "h2", [2], result(5.0))
    [foreign] = [p for p in tmp_path.rglob("*.npz") if p != entry]
    entry.write_bytes(foreign.read_bytes())  # an entry holding another image's result
    with caplog.at_level(logging.WARNING):
        assert cache.get("img", "h", [2], FRAME, top_k=2) is None
    assert "holds another or a malformed entry" in caplog.text
    cache.put("img", "h", [2], result(2.0))  # rewritten
    assert cache.get("img", "h", [2], FRAME, top_k=2).maps.max() == 2.0
    entry.write_bytes(b"not a zip")
    assert cache.get("img", "h", [2], FRAME, top_k=2) is None


def test_failed_write_is_a_warning(tmp_path, caplog, monkeypatch):
    import wsol_bench.saliency.cache as module

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(module, "atomic_write", full_disk)
    cache = SaliencyCache(tmp_path, {"model": "m"})
    with caplog.at_level(logging.WARNING):
        cache.put("img", "h", [2], result())
    assert cache.write_failures == 1 and "No space left" in caplog.text
