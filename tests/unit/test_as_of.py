"""No analysis of the future: the as-of guard of `run --as-of` and `backfill --end` (pure)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from abflow.as_of import check_backfill_end, check_not_future, day_end, day_ends

NOW = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)


def test_as_of_up_to_five_minutes_ahead_is_clock_skew() -> None:
    check_not_future(NOW + timedelta(minutes=5), now=NOW)
    check_not_future(datetime(2026, 11, 30, 3, 4), now=NOW)  # naive means UTC
    with pytest.raises(ValueError, match=r"^--as-of 2026-11-30 03:06 UTC is in the future"):
        check_not_future(NOW + timedelta(minutes=6), "--as-of", now=NOW)


def test_a_backfill_takes_complete_days_only() -> None:
    check_backfill_end(date(2026, 11, 29), now=NOW)  # ended at midnight, 3 h ago
    check_backfill_end(date(2026, 11, 30), now=datetime(2026, 11, 30, 23, 56, tzinfo=UTC))
    with pytest.raises(ValueError, match=r"^end 2026-11-30: that day is not over until 2026-12-01"):
        check_backfill_end(date(2026, 11, 30), now=NOW)


def test_day_ends_are_the_next_midnights() -> None:
    assert day_end(date(2026, 11, 20)) == datetime(2026, 11, 21, tzinfo=UTC)
    assert day_ends(date(2026, 11, 30), date(2026, 12, 1)) == [
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2026, 12, 2, tzinfo=UTC),
    ]
    with pytest.raises(ValueError, match="before start"):
        day_ends(date(2026, 11, 2), date(2026, 11, 1))
