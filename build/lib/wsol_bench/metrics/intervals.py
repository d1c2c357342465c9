"""Binomial confidence intervals for error rates."""

from __future__ import annotations

import math


def wilson_interval(errors: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval (95% by default) for ``errors`` failures out of ``n`` trials."""
    if n <= 0:
        return (math.nan, math.nan)
    p = errors / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))
