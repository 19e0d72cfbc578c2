"""The instants runs and backfills analyse "as of", and the guard against analysing the future.

A run as of a future instant would stay the newest run for apps (and block auto-promotion of
every real run before it), so `run --as-of` and `backfill --end` beyond now + 5 minutes (clock
skew) are refused before anything is written.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

MAX_AHEAD = timedelta(minutes=5)


def _fmt(ts: datetime) -> str:
    return f"{ts.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def utc(ts: datetime) -> datetime:
    """A timezone-aware instant; naive timestamps are taken as UTC."""
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def check_not_future(as_of: datetime, label: str = "as_of", now: datetime | None = None) -> None:
    """Raise ValueError (one line) when as_of is later than now + 5 minutes."""
    now = now or datetime.now(UTC)
    if utc(as_of) > now + MAX_AHEAD:
        raise ValueError(
            f"{label} {_fmt(utc(as_of))} is in the future (now is {_fmt(now)}); "
            "nothing was analysed or written"
        )


def day_end(day: date) -> datetime:
    """The instant a day's data is complete: the next midnight UTC."""
    return datetime.combine(day + timedelta(days=1), time.min, tzinfo=UTC)


def day_ends(start: date, end: date) -> list[datetime]:
    """End-of-day instants (next midnight UTC) for each day in [start, end]."""
    if end < start:
        raise ValueError(f"end ({end}) is before start ({start})")
    return [day_end(start + timedelta(days=i)) for i in range((end - start).days + 1)]


def check_backfill_end(end: date, label: str = "end", now: datetime | None = None) -> None:
    """A backfill analyses complete days only: the end day must be over (within 5 minutes)."""
    now = now or datetime.now(UTC)
    if day_end(end) > now + MAX_AHEAD:
        raise ValueError(
            f"{label} {end}: that day is not over until {_fmt(day_end(end))} (now is "
            f"{_fmt(now)}); backfills take complete days only, `abflow run` analyses up to now;"
            " nothing was analysed or written"
        )
