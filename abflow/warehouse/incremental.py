"""Incremental refresh: per-unit partial aggregates kept in the warehouse, updated from a watermark.

`fetch_sufficient_stats_incremental` returns the same sufficient statistics as
`extract.fetch_sufficient_stats`, but instead of one pass over all of an experiment's events it
keeps `unit_metric_partials` (migration 004): per unit and metric, mergeable aggregates (count,
count of values, sum, max) of the unit's events before ``sealed_before``, already classified
against the unit's first exposure. ``sealed_before`` is the UTC midnight before
``as_of - late_lookback_hours`` of the last refresh. A refresh then reads only

- the events since the stored ``sealed_before`` (new events, plus late arrivals that are at most
  about ``late_lookback_hours`` old), and
- all events of the units whose first exposure is new or moved since the last refresh (their
  pre-period and contamination events may be older than the refresh window),

merges what it read with the sealed partials into metric x variant x segment sums exactly like
metric_stats.sql, and in the same statement seals what has become older than the lookback.

Known trade-off: an event that arrives later than the lookback (occurred_at before the stored
``sealed_before``) is not seen by an incremental refresh; ``full_refresh=True`` picks it up.
The full path runs when asked, on the first refresh, when the definition (or a source relation)
changed, when ``as_of`` moves back before the watermark (a backfill into the past), or when a
wider lookback would need events that are already sealed.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, Literal, cast

import psycopg
from psycopg import sql
from sqlalchemy import Connection

from abflow.definitions import Experiment
from abflow.results import SufficientStats
from abflow.warehouse import extract
from abflow.warehouse.extract import (
    build_analysis_tables,
    metric_arrays,
    metric_definitions,
    relation,
)
from abflow.warehouse.sqlfiles import read_sql

RefreshMode = Literal["full", "incremental"]

# Bump when the meaning of the stored partials changes: every experiment then refreshes in full.
PARTIALS_VERSION = 1
DEFAULT_LATE_LOOKBACK_HOURS = 48.0


@dataclass(frozen=True)
class RefreshInfo:
    """What one refresh did: its mode and why, the events window it read, the rows it wrote."""

    mode: RefreshMode
    reason: str
    as_of: datetime
    previous_watermark: datetime | None
    # Lower bound of occurred_at for the scan of all the experiment's units (upper bound: as_of).
    events_from: datetime
    # Units recomputed from all their events (new or moved first exposure; all units when full).
    units_recomputed: int
    # Unit x metric rows of unit_metric_partials inserted or merged into.
    partial_rows_sealed: int
    # Partials now hold the events before this instant; the next refresh reads on from here.
    sealed_before: datetime


def definition_hash(experiment: Experiment, *, assignments: str, events: str) -> str:
    """Fingerprint of everything the stored partials depend on; a change forces a full refresh."""
    payload = {
        "version": PARTIALS_VERSION,
        "metrics": metric_definitions(experiment),
        "start_at": experiment.start_at.astimezone(UTC).isoformat(),
        "lookback_days": _lookback_days(experiment),
        "variants": [v.key for v in experiment.variants],
        "assignments": assignments,
        "events": events,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def utc_midnight(instant: datetime) -> datetime:
    """The UTC midnight at or before `instant` (the sealing boundary falls on whole UTC days)."""
    utc = instant.astimezone(UTC)
    return datetime(utc.year, utc.month, utc.day, tzinfo=UTC)


def fetch_sufficient_stats_incremental(
    conn: Connection,
    experiment: Experiment,
    as_of: datetime,
    *,
    assignments: str,
    events: str,
    late_lookback_hours: float = DEFAULT_LATE_LOOKBACK_HOURS,
    full_refresh: bool = False,
) -> tuple[list[SufficientStats], RefreshInfo]:
    """Refresh the experiment's partials up to as_of and return its sufficient statistics.

    Runs in the caller's transaction (temporary tables are dropped on commit; a rollback also
    undoes the refresh). The results equal `extract.fetch_sufficient_stats` for the same as_of,
    except for events that arrived later than `late_lookback_hours` (see the module docstring).
    """
    if late_lookback_hours < 0:
        raise ValueError("late_lookback_hours must be >= 0")
    as_of = min(as_of, experiment.end_at) if experiment.end_at else as_of
    lookback_days = _lookback_days(experiment)
    digest = definition_hash(experiment, assignments=assignments, events=events)
    key = {"experiment_key": experiment.key}
    params: dict[str, Any] = {
        **key,
        "start_at": experiment.start_at,
        "as_of": as_of,
        "value_limit": extract.VALUE_LIMIT,
        **metric_arrays(experiment),
        "segments": list(experiment.analysis.segments),
        "variants": [v.key for v in experiment.variants],
        "event_names": sorted(
            {m.numerator_event for m in experiment.metrics}
            | {m.denominator_event for m in experiment.metrics if m.denominator_event}
        ),
        "lookback_days": lookback_days,
        "sealed_before": utc_midnight(as_of - timedelta(hours=late_lookback_hours)),
    }

    _run(conn, _statement("lock"), key)
    state = _fetchone(conn, _statement("read_state"), key)
    previous_watermark = state[0] if state else None
    reason = _full_refresh_reason(state, digest, as_of, late_lookback_hours, requested=full_refresh)
    mode: RefreshMode = "full" if reason else "incremental"
    full = mode == "full"
    # Full: every event that can matter to any unit (none precedes start - lookback, as no unit
    # is exposed before the start). Incremental: the events not sealed by the last refresh.
    if full or state is None:
        events_from = experiment.start_at - timedelta(days=lookback_days)
    else:
        events_from = state[1]

    # The analysed units exactly as extract.fetch_sufficient_stats builds them.
    _run(conn, _statement("drop_temp_tables"), {})
    build_analysis_tables(conn, params, assignments=assignments)
    _run(conn, _statement("refresh_units"), {**key, "full": full})
    _run(conn, _statement("analyze_refresh_units"), {})
    recomputed = _fetchone(
        conn, "select count(*) from abflow_refresh_units where status in ('new', 'moved')", {}
    )
    units_recomputed = int(recomputed[0]) if recomputed else 0

    if full:
        _run(conn, _statement("forget_experiment_partials"), key)
        _run(conn, _statement("forget_experiment_seen"), key)
    else:
        _run(conn, _statement("forget_changed_units"), key)
        _run(conn, _statement("forget_gone_seen"), key)
    stats, sealed_rows = _fetch_stats(
        conn,
        {
            **params,
            "read_from": events_from,
            # Gates, not filters: a false one removes that scan of events from the plan.
            "read_changed": units_recomputed > 0,
            "read_same": not full,
        },
        events,
    )
    _run(conn, _statement("remember_seen"), key)
    _run(
        conn,
        _statement("write_state"),
        {
            **key,
            "as_of": as_of,
            "sealed_before": params["sealed_before"],
            "definition_hash": digest,
            "mode": mode,
        },
    )
    info = RefreshInfo(
        mode=mode,
        reason=reason or "watermark",
        as_of=as_of,
        previous_watermark=previous_watermark,
        events_from=events_from,
        units_recomputed=units_recomputed,
        partial_rows_sealed=sealed_rows,
        sealed_before=params["sealed_before"],
    )
    return stats, info


def _full_refresh_reason(
    state: tuple[Any, ...] | None,
    digest: str,
    as_of: datetime,
    late_lookback_hours: float,
    *,
    requested: bool,
) -> str | None:
    """Why this refresh must recompute everything, or None when an incremental one is exact."""
    if requested:
        return "full refresh requested"
    if state is None:
        return "first refresh"
    watermark, sealed_before, stored_digest = state
    if stored_digest != digest:
        return "definition or source changed"
    if as_of < watermark:
        return "as_of before the watermark"
    # A wider lookback than before would re-read events that are already sealed.
    if utc_midnight(watermark - timedelta(hours=late_lookback_hours)) < sealed_before:
        return "late-arrival lookback widened"
    return None


def _fetch_stats(
    conn: Connection, params: dict[str, Any], events: str
) -> tuple[list[SufficientStats], int]:
    """Read the unsealed events, seal the old part; return the statistics and the rows sealed."""
    query = sql.SQL(read_sql("queries/incremental_stats.sql")).format(events=relation(events))
    with _cursor(conn) as cur:
        cur.execute(query, params, prepare=False)
        cols = [d.name for d in cur.description or ()]
        rows = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
    sealed = int(rows[0]["partial_rows_sealed"]) if rows else 0
    return [extract.stats_from_row(r) for r in rows], sealed


@cache
def _statements() -> dict[str, str]:
    """The '-- name: x' blocks of incremental_refresh.sql, by name."""
    text = read_sql("queries/incremental_refresh.sql")
    parts = re.split(r"^-- name: (\w+)\s*$", text, flags=re.MULTILINE)
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


def _statement(name: str) -> str:
    return _statements()[name]


def _cursor(conn: Connection) -> psycopg.Cursor[Any]:
    raw = cast(psycopg.Connection, conn.connection.dbapi_connection)
    return raw.cursor()


def _run(
    conn: Connection,
    template: str,
    params: dict[str, Any],
    sources: dict[str, str] | None = None,
) -> int:
    """Execute one statement (source relations as identifiers); return the rows it affected."""
    query = sql.SQL(template).format(**{k: relation(v) for k, v in (sources or {}).items()})
    with _cursor(conn) as cur:
        # Never a server-side prepared statement: a generic plan would not see the time bounds,
        # and the refresh window is what makes the events scan small.
        cur.execute(query, params, prepare=False)
        return max(cur.rowcount, 0)


def _fetchone(conn: Connection, template: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
    with _cursor(conn) as cur:
        cur.execute(sql.SQL(template), params, prepare=False)
        return cur.fetchone()


def _lookback_days(experiment: Experiment) -> int:
    return experiment.analysis.cuped.lookback_days if experiment.analysis.cuped else 0
