"""Plain-text descriptions of a metric's capping and event filters (CLI panel, report)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from abflow.definitions import Capping, EventFilter, Metric


def _value(v: str | float) -> str:
    return f"{v:g}" if isinstance(v, float) else repr(v) if not v.isidentifier() else v


def describe_filter(filters: tuple[EventFilter, ...]) -> str:
    """`platform in [ios, android] and amount >= 10` (text that is not a plain word quoted)."""
    parts = []
    for f in filters:
        if f.op == "exists":
            parts.append(f"{f.property} exists")
        elif f.values is not None:
            op = "not in" if f.op == "not_in" else "in"
            parts.append(f"{f.property} {op} [{', '.join(_value(v) for v in f.bound_values)}]")
        else:
            parts.append(f"{f.property} {f.op} {_value(f.bound_values[0])}")
    return " and ".join(parts)


def metric_filter_text(m: Metric) -> str:
    """The metric's filters, per side for a ratio whose sides differ; '' without filters."""
    if m.kind != "ratio" or m.numerator_filter == m.denominator_filter:
        return describe_filter(m.numerator_filter)
    sides = [
        f"{name}: {describe_filter(fs)}"
        for name, fs in (("numerator", m.numerator_filter), ("denominator", m.denominator_filter))
        if fs
    ]
    return "; ".join(sides)


def _rule(c: Capping) -> str:
    if c.type == "percentile":
        bounds = [f"p{v * 100:g}" for v in (c.lower, c.upper) if v is not None]
        zeros = ", zeros ignored" if c.ignore_zeros else ""
        return f"winsorized at {' / '.join(bounds)} of all units{zeros}"
    return "clamped to " + " / ".join(
        f"{name} {v:g}" for name, v in (("≥", c.lower), ("≤", c.upper)) if v is not None
    )


def _bounds(lower: Any, upper: Any) -> str:
    parts = [f"≥ {float(lower):.4g}" if lower is not None else "", ""]
    parts[1] = f"≤ {float(upper):.4g}" if upper is not None else ""
    return " ".join(p for p in parts if p)


def capping_text(m: Metric, caps: Mapping[str, Any] | None = None) -> str:
    """`winsorized at p99 of all units (≤ 159.2)`; ratios per side; '' when not capped."""
    out = []
    for side, c, lo, hi in (
        ("numerator" if m.kind == "ratio" else "", m.numerator_capping, "cap_lower", "cap_upper"),
        ("denominator", m.denominator_capping, "denominator_cap_lower", "denominator_cap_upper"),
    ):
        if c is None:
            continue
        used = _bounds((caps or {}).get(lo), (caps or {}).get(hi))
        text = _rule(c) + (f" ({used})" if used else "")
        out.append(f"{side} {text}".strip())
    return "; ".join(out)
