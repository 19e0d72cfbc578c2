"""The exposure-age cohorts: one table, bound into every statement that reads them."""

from __future__ import annotations

from datetime import UTC, datetime

from abflow.cohorts import COHORT_PREFIX, COHORTS, cohort_values
from abflow.definitions import parse_experiment
from abflow.warehouse import plan


def test_the_cohorts_tile_the_days_since_exposure_in_four_labelled_weeks() -> None:
    """Day 0 on, no gap or overlap, the last open-ended; four, as the SQL has four columns."""
    assert len(COHORTS) == 4
    assert COHORTS[0][1] == 0 and COHORTS[-1][2] is None
    for (_, _, last), (_, first, _) in zip(COHORTS, COHORTS[1:], strict=False):
        assert last is not None and first == last + 1
    for label, first, last in COHORTS:
        assert label == (f"{first}-{last}" if last is not None else f"{first}+")


def test_the_analysis_values_carry_each_cohort_s_first_day_and_segment() -> None:
    """What metric_stats.sql, the incremental refresh and exposure_age.sql bind."""
    experiment = parse_experiment(
        {
            "key": "cohorts", "name": "cohorts", "status": "running",
            "start_at": "2026-11-01T00:00:00Z",
            "variants": [{"key": "a", "weight": 0.5, "control": True}, {"key": "b", "weight": 0.5}],
            "metrics": [{"key": "m", "kind": "proportion", "event": "x", "role": "primary"}],
        }
    )  # fmt: skip
    values = plan.analysis_values(experiment, datetime(2026, 11, 21, tzinfo=UTC))
    assert {k: values[k] for k in cohort_values()} == {
        "cohort_0_day": 0, "cohort_0_segment": f"{COHORT_PREFIX}0-6",
        "cohort_1_day": 7, "cohort_1_segment": f"{COHORT_PREFIX}7-13",
        "cohort_2_day": 14, "cohort_2_segment": f"{COHORT_PREFIX}14-20",
        "cohort_3_day": 21, "cohort_3_segment": f"{COHORT_PREFIX}21+",
    }  # fmt: skip
