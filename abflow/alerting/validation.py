"""A run's validation result, readable: per check what was checked, observed, unexpected, verdict.

Built from the `health_checks` rows (or the run's HealthCheckRow records), not from Great
Expectations objects: whatever engine evaluates the suites, the rows keep the same shape
(`details.expectation`, `details.column`, `details.unexpected_count`, `details.error`), so the
Prefect artifact and the report's health section stay this readable.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, is_dataclass
from typing import Any

GX_PREFIX = "gx_"
SUITES = ("assignments", "events", "variant_stats")

# The experiment health checks beside the suites (abflow.health).
HEALTH_CHECKS: dict[str, str] = {
    "srm": "sample ratio: first exposures per variant match the configured weights (chi-square)",
    "multiple_exposure": "share of units exposed to more than one variant (always excluded)",
    "unknown_variants": "units exposed to a variant the definition does not have",
    "min_sample": "units in the smallest variant reach analysis.min_sample_size",
    "contamination": "units with the primary metric's event before their first exposure",
    "traffic": "hours since the last exposure (traffic stopped?)",
    "covariate_imbalance": "CUPED covariates (pre-exposure) balanced across arms (Welch p)",
    "suspicious_uplift": "largest relative lift vs analysis.max_plausible_lift",
    "novelty_effect": "first-week lift vs later weeks since exposure (z-test, Bonferroni p)",
}

_EXPECTATIONS: dict[str, str] = {
    "expect_table_row_count_to_be_between": "row count of the window within bounds",
    "expect_column_values_to_not_be_null": "{column} is never null",
    "expect_column_values_to_be_null": "{column} is null",
    "expect_column_values_to_be_in_set": "{column} only takes configured values",
    "expect_column_values_to_be_between": "{column} within its allowed range",
    "expect_column_distinct_values_to_contain_set": "{column} contains every expected value",
    "expect_column_sum_to_be_between": "sum of {column} within bounds",
}


def _row(check: Any) -> Mapping[str, Any]:
    """A health_checks row as a mapping (a HealthCheckRow record or a database row)."""
    if is_dataclass(check) and not isinstance(check, type):
        return asdict(check)
    return check if isinstance(check, Mapping) else dict(check)


def suite_of(check_name: str) -> str:
    """'assignments', 'events' or 'variant_stats' for a GX check; 'health' for the others."""
    if check_name.startswith(GX_PREFIX):
        rest = check_name.removeprefix(GX_PREFIX)
        for suite in sorted(SUITES, key=len, reverse=True):
            if rest.startswith(suite + "_"):
                return suite
        return "gx"
    return "health"


def _short_name(check_name: str) -> str:
    suite = suite_of(check_name)
    if suite in SUITES:
        return check_name.removeprefix(f"{GX_PREFIX}{suite}_")
    return check_name


def describe(check_name: str, details: Mapping[str, Any] | None) -> str:
    """What a check checked, in words ('events.value: value finite in range (…)')."""
    details = details or {}
    base = check_name.split("[", 1)[0]
    if base in HEALTH_CHECKS:
        segment = check_name[len(base) :]
        return HEALTH_CHECKS[base] + (f" in segment {segment.strip('[]')}" if segment else "")
    suite = suite_of(check_name)
    expectation = str(details.get("expectation") or "")
    column = details.get("column")
    col = ", ".join(column) if isinstance(column, list) else (column or "")
    what = _EXPECTATIONS.get(expectation, expectation.removeprefix("expect_").replace("_", " "))
    what = what.format(column=col or "the column")
    mostly = details.get("mostly")
    if isinstance(mostly, int | float) and mostly < 1:
        what += f" (in at least {mostly:.0%} of rows)"
    label = _short_name(check_name).replace("_", " ")
    where = f"{suite}.{col}" if col else suite
    return f"{where}: {label} — {what}"


def unexpected_count(details: Mapping[str, Any] | None) -> int | None:
    """Rows that broke an expectation (None for checks that do not count rows)."""
    value = (details or {}).get("unexpected_count")
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def verdict(check: Mapping[str, Any]) -> str:
    """'passed', 'FAILED' (critical) or 'warning'."""
    if check.get("passed"):
        return "passed"
    return "FAILED" if check.get("severity") == "critical" else "warning"


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return round(x, 6) if math.isfinite(x) else None


def observed(check: Mapping[str, Any]) -> Any:
    """The observed value: the check's number, else GX's observed value, else its error."""
    details = check.get("details") or {}
    number = _number(check.get("observed"))
    if number is not None:
        return number
    if details.get("error"):
        return f"error: {str(details['error'])[:200]}"
    value = details.get("observed_value")
    return value if isinstance(value, str | int | float) else None


def validation_records(checks: Iterable[Any]) -> list[dict[str, Any]]:
    """JSON-safe rows (Prefect table artifact): critical failures first, then warnings, passes.

    No sample values: they are unit ids and other raw data (the report, which reads the
    warehouse, shows them).
    """
    rows = [_row(c) for c in checks]
    rows.sort(
        key=lambda c: (bool(c.get("passed")), c.get("severity") != "critical", c["check_name"])
    )
    return [
        {
            "suite": suite_of(str(c["check_name"])),
            "check": _short_name(str(c["check_name"])),
            "what was checked": describe(str(c["check_name"]), c.get("details")),
            "observed": observed(c),
            "unexpected": unexpected_count(c.get("details")),
            "threshold": _number(c.get("threshold")),
            "result": verdict(c),
            "severity": c.get("severity"),
        }
        for c in rows
    ]


def validation_summary(key: str, checks: Iterable[Any]) -> str:
    """One line of counts for the artifact description."""
    records = validation_records(checks)
    failed = sum(r["result"] == "FAILED" for r in records)
    warned = sum(r["result"] == "warning" for r in records)
    return (
        f"{key}: {len(records)} checks, {failed} critical failure(s), {warned} warning(s)"
        " — Great Expectations suites and experiment health checks"
    )
