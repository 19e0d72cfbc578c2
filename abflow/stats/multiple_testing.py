"""Family-wise and false-discovery-rate p-value adjustments and matching CI levels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

AdjustMethod = Literal["none", "holm", "benjamini_hochberg", "bonferroni"]
_METHODS = ("none", "holm", "benjamini_hochberg", "bonferroni")


def _clean(p_values: Sequence[float]) -> np.ndarray:
    """p-values as floats in [0, 1]; missing/NaN become 1.0 so they can never be rejected."""
    arr = np.array([1.0 if p is None else float(p) for p in p_values], dtype=np.float64)
    arr[~np.isfinite(arr)] = 1.0
    return np.clip(arr, 0.0, 1.0)


def adjust_p_values(p_values: Sequence[float], method: AdjustMethod) -> list[float]:
    """Adjusted p-values: Bonferroni, Holm 1979 step-down or Benjamini–Hochberg 1995 step-up."""
    if method not in _METHODS:
        raise ValueError(f"unknown adjustment method {method!r}")
    p = _clean(p_values)
    m = p.size
    if m == 0 or method == "none":
        return [float(v) for v in p]
    if method == "bonferroni":
        adj = np.minimum(p * m, 1.0)
    elif method == "holm":
        order = np.argsort(p, kind="mergesort")
        stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
        adj = np.empty(m)
        adj[order] = np.minimum(stepped, 1.0)
    else:
        order = np.argsort(p, kind="mergesort")[::-1]
        ranks = m - np.arange(m)  # ranks m, m−1, …, 1 for the descending order
        stepped = np.minimum.accumulate(p[order] * m / ranks)
        adj = np.empty(m)
        adj[order] = np.minimum(stepped, 1.0)
    return [float(v) for v in adj]


def adjusted_ci_alpha(alpha: float, p_values: Sequence[float], method: AdjustMethod) -> float:
    """α to pass to compare() so CIs match the adjustment (Bonferroni / Benjamini–Yekutieli)."""
    # - bonferroni and holm: α/m. Holm has no simple compatible interval; Bonferroni intervals
    #   are the standard simultaneous companion (valid, slightly wider than Holm's decisions).
    # - benjamini_hochberg: FCR-adjusted intervals α·R/m with R = number of BH rejections at α
    #   (Benjamini & Yekutieli 2005); max(R, 1) so the intervals stay defined when R = 0.
    if method not in _METHODS:
        raise ValueError(f"unknown adjustment method {method!r}")
    m = len(p_values)
    if method == "none" or m <= 1:
        return alpha
    if method in ("bonferroni", "holm"):
        return alpha / m
    rejected = sum(1 for q in adjust_p_values(p_values, method) if q <= alpha)
    return alpha * max(rejected, 1) / m


def ci_levels(alpha: float, p_values: Sequence[float], method: AdjustMethod) -> list[float]:
    """Per-hypothesis α for intervals that agree with the adjusted decisions of `method`."""
    # - none: α; bonferroni: α/m (simultaneous).
    # - holm: the level each hypothesis was tested at in the step-down: the j-th smallest p is
    #   rejected at α/(m−j) (j from 0), and every hypothesis from the first acceptance on gets that
    #   acceptance's level, so an interval excludes 0 exactly when Holm rejects (Holm 1979).
    # - benjamini_hochberg: FCR-adjusted α·max(R,1)/m (Benjamini & Yekutieli 2005), which also
    #   agrees with BH's rejections.
    if method not in _METHODS:
        raise ValueError(f"unknown adjustment method {method!r}")
    p = _clean(p_values)
    m = p.size
    if m == 0:
        return []
    if method == "none" or m == 1:
        return [alpha] * m
    if method == "bonferroni":
        return [alpha / m] * m
    if method == "benjamini_hochberg":
        return [adjusted_ci_alpha(alpha, list(p), method)] * m
    order = np.argsort(p, kind="mergesort")
    levels = np.empty(m)
    accepted_level: float | None = None
    for j, idx in enumerate(order):
        level = alpha / (m - j)
        if accepted_level is None and p[idx] > level:
            accepted_level = level
        levels[idx] = level if accepted_level is None else accepted_level
    return [float(v) for v in levels]
