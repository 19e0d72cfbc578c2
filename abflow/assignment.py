"""Deterministic sticky assignment (SPEC §3.4), pure: the same bucket as the SQL function."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

TWO_64 = 2**64


def bucket(experiment_key: str, unit_id: str) -> float:
    """First 8 bytes of sha256(utf8(key + ':' + unit)) as unsigned big-endian / 2^64, in [0, 1)."""
    digest = hashlib.sha256(f"{experiment_key}:{unit_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / TWO_64


def pick_variant(
    experiment_key: str,
    unit_id: str,
    variants: Sequence[dict[str, Any]],
    *,
    status: str = "running",
    promoted_variant_key: str | None = None,
) -> str | None:
    """Variant for a unit: promoted wins; non-running gives the control; else weight intervals."""
    if not variants:
        return None
    if promoted_variant_key is not None:
        return promoted_variant_key
    if status != "running":
        return next((v["key"] for v in variants if v.get("control")), None)
    # Exact rational arithmetic, like the SQL side's numeric: no float edge cases at boundaries.
    digest = hashlib.sha256(f"{experiment_key}:{unit_id}".encode()).digest()
    b = Fraction(int.from_bytes(digest[:8], "big"), TWO_64)
    cumulative = Fraction(0)
    for v in variants:
        cumulative += Fraction(str(v["weight"]))
        if b < cumulative:
            return str(v["key"])
    return str(variants[-1]["key"])
