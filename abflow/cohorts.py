"""Exposure-age cohorts (novelty and primacy): weeks since a unit's first exposure.

One definition for Python and SQL: the one pass, the incremental refresh and exposure_age.sql
read each cohort's first day and segment name as bound values (`cohort_values`), and
abflow.novelty labels its rows from the same table. The SQL has columns per cohort (the list
`cohorts` in sql/macros.sql, and the stored partials of migration 014), so the number of cohorts
is fixed at four (tests/unit/test_sql_macros.py checks the two agree); their boundaries are not
written anywhere else.
"""

from __future__ import annotations

from typing import Any

COHORT_PREFIX = "@exposure_age="
# (label, first day, last day) in days since the unit's first exposure; each cohort starts the
# day after the previous one ends, and the last one is open-ended
COHORTS: tuple[tuple[str, int, int | None], ...] = (
    ("0-6", 0, 6),
    ("7-13", 7, 13),
    ("14-20", 14, 20),
    ("21+", 21, None),
)


def cohort_values() -> dict[str, Any]:
    """The placeholders the SQL reads: `cohort_k_day` (first day) and `cohort_k_segment`."""
    values: dict[str, Any] = {}
    for k, (label, first_day, _) in enumerate(COHORTS):
        values[f"cohort_{k}_day"] = first_day
        values[f"cohort_{k}_segment"] = COHORT_PREFIX + label
    return values
