"""Registries behave as read-only collections of names: sorted iteration, len, in, a readable repr."""

from __future__ import annotations

import dataclasses

import wsol_bench
from wsol_bench.registry import Registry


def test_registry_is_a_sorted_collection_of_names():
    reg: Registry[type] = Registry("thing.method", {"zeta": "x.y:Z", "alpha": "x.y:A"})

    @reg.register("mid")
    @dataclasses.dataclass(frozen=True)
    class Mid:
        pass

    assert list(reg) == ["alpha", "mid", "zeta"]
    assert sorted(reg) == ["alpha", "mid", "zeta"]
    assert len(reg) == 3
    assert "alpha" in reg and "mid" in reg
    assert "beta" not in reg and Mid not in reg and 3 not in reg
    assert repr(reg) == "Registry('thing.method': alpha, mid, zeta)"


def test_public_registries_iterate_over_their_names():
    methods = wsol_bench.SALIENCY_METHODS
    assert sorted(methods) == methods.names()
    assert "gradient" in methods and "gradcam" in methods
    assert len(methods) == len(methods.names()) >= 6
    assert "saliency.method" in repr(methods) and "gradient" in repr(methods)
    for registry in (wsol_bench.BOX_EXTRACTORS, wsol_bench.METRICS, wsol_bench.MODELS):
        assert list(registry) == registry.names() and len(registry) > 0
        assert "object at 0x" not in repr(registry)
