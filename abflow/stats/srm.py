"""Sample-ratio mismatch and omnibus k×2 chi-square tests (Pearson 1900)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from scipy import special

# SPEC §4: an experiment is flagged for SRM below this p-value.
SRM_THRESHOLD = 0.001


def srm_p_value(counts: Sequence[int], weights: Sequence[float]) -> float:
    """Pearson χ² goodness-of-fit p of counts vs weights over arms with weight > 0 (else 1.0)."""
    if len(counts) != len(weights):
        raise ValueError("counts and weights must have the same length")
    pairs = [
        (float(c), float(w))
        for c, w in zip(counts, weights, strict=True)
        if math.isfinite(float(w)) and w > 0 and math.isfinite(float(c))
    ]
    total = sum(c for c, _ in pairs)
    weight_sum = sum(w for _, w in pairs)
    if len(pairs) < 2 or total <= 0 or weight_sum <= 0:
        return 1.0
    stat = 0.0
    for c, w in pairs:
        expected = total * w / weight_sum
        if expected <= 0.0:
            # A weight so small that its expected count underflows (found by hypothesis with a
            # subnormal weight): any unit in that arm is an extreme mismatch, none is no evidence.
            if c > 0:
                return 0.0
            continue
        stat += (c - expected) ** 2 / expected
    p = float(special.chdtrc(len(pairs) - 1, stat))
    return min(max(p, 0.0), 1.0) if math.isfinite(p) else 1.0


def chi_square_omnibus(
    conversions: Sequence[float], totals: Sequence[int]
) -> tuple[float, float, int]:
    """Pearson χ² test of homogeneity on the k×2 (converted, not) table: (stat, p, df)."""
    if len(conversions) != len(totals):
        raise ValueError("conversions and totals must have the same length")
    # Arms without units carry no information and would give zero expected counts.
    rows = [
        (float(x), float(t))
        for x, t in zip(conversions, totals, strict=True)
        if math.isfinite(float(x)) and math.isfinite(float(t)) and t > 0 and 0 <= x <= t
    ]
    df = max(len(rows) - 1, 0)
    n = sum(t for _, t in rows)
    conv = sum(x for x, _ in rows)
    if df == 0 or conv <= 0 or conv >= n:
        # All or no conversions: every expected cell in one column is 0, the test is undefined.
        return 0.0, 1.0, df
    p_all = conv / n
    stat = 0.0
    for x, t in rows:
        e1 = t * p_all
        e0 = t - e1
        stat += (x - e1) ** 2 / e1 + ((t - x) - e0) ** 2 / e0
    p = float(special.chdtrc(df, stat))
    if not (math.isfinite(stat) and math.isfinite(p)):
        return 0.0, 1.0, df
    return stat, min(max(p, 0.0), 1.0), df
