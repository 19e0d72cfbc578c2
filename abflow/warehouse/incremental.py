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
import threading
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import sqlglot
from sqlalchemy import Connection
from sqlglot.errors import ErrorLevel

from abflow.definitions import Experiment
from abflow.results import SufficientStats
from abflow.warehouse import extract, plan
from abflow.warehouse.dialects import (
    CANONICAL,
    Source,
    Statement,
    canonical,
    canonical_block,
)
from abflow.warehouse.engines import Executor, PostgresExecutor, execute_plan
from abflow.warehouse.extract import metric_definitions
from abflow.warehouse.sqlfiles import read_sql

RefreshMode = Literal["full", "incremental"]

# Bump when the meaning of the stored partials changes: every experiment then refreshes in full.
# 2: pre-exposure denominators (ratio CUPED), property filters; 3: exposure-age cohorts
PARTIALS_VERSION = 3
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
    # Statements that read all of the experiment's events even on an incremental refresh, and
    # why: quantiles over events need every event value (order statistics do not merge).
    # Exposure-age cohorts and quantiles over units come from the merged per-unit partials.
    full_scans: tuple[str, ...] = ()


def definition_hash(experiment: Experiment, *, assignments: str, events: str) -> str:
    """Fingerprint of everything the stored partials depend on; a change forces a full refresh."""
    payload = {
        "version": PARTIALS_VERSION,
        "metrics": metric_definitions(experiment),
        "start_at": experiment.start_at.astimezone(UTC).isoformat(),
        "lookback_days": _lookback_days(experiment),
        # the partials keep exposure-age cohorts only when they are analysed
        "exposure_age": bool(experiment.analysis.exposure_age),
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
    periods: Sequence[datetime] = (),
) -> tuple[list[SufficientStats], RefreshInfo]:
    """Refresh the experiment's partials up to as_of and return its sufficient statistics.

    PostgreSQL, in the caller's transaction (temporary tables are dropped on commit; a rollback
    also undoes the refresh). The results equal `extract.fetch_sufficient_stats` for the same
    as_of, except for events that arrived later than `late_lookback_hours` (module docstring).
    """
    return refresh(
        PostgresExecutor(conn),
        experiment,
        as_of,
        extract.default_sources(assignments, events),
        source_names=(assignments, events),
        late_lookback_hours=late_lookback_hours,
        full_refresh=full_refresh,
        periods=periods,
    )


_local_locks: dict[str, threading.Lock] = {}
_local_locks_guard = threading.Lock()


def ensure_state_tables(executor: Executor) -> None:
    """Create the refresh state tables where no migration made them (DuckDB).

    The CREATE TABLE statements of migration 004 and the columns migrations 012 and 014 add,
    rendered for the executor's dialect: one definition of the tables for every engine.
    """
    statements: list[Statement] = []
    chunks = [
        *read_sql("migrations/004_incremental.sql").split(";"),
        *read_sql("migrations/012_metrics_partials.sql").split(";"),
        *read_sql("migrations/014_onepass_cohort_partials.sql").split(";"),
    ]
    for chunk in chunks:
        body = re.sub(r"--[^\n]*", "", chunk).strip()
        if body.lower().startswith(("create table", "alter table")):
            create = sqlglot.parse_one(body, read=CANONICAL, error_level=ErrorLevel.RAISE)
            statements.append(Statement(f"create_{len(statements)}", create, kind="execute"))
    execute_plan(executor, statements, {})


def refresh(
    executor: Executor,
    experiment: Experiment,
    as_of: datetime,
    sources: Mapping[str, Source],
    *,
    source_names: tuple[str, str],
    late_lookback_hours: float = DEFAULT_LATE_LOOKBACK_HOURS,
    full_refresh: bool = False,
    periods: Sequence[datetime] = (),
) -> tuple[list[SufficientStats], RefreshInfo]:
    """The incremental refresh on PostgreSQL or DuckDB, inside the executor's transaction.

    `periods` (a bandit's allocation period starts) label units by the period of their first
    exposure; the per-unit partials do not depend on them, so reweights never force a full pass.
    """
    if late_lookback_hours < 0:
        raise ValueError("late_lookback_hours must be >= 0")
    # PostgreSQL locks the experiment in the transaction (the lock block); DuckDB: one refresh
    # of an experiment at a time in this process (DuckDB files have one writing process)
    lock: AbstractContextManager[Any] = nullcontext()
    if executor.dialect != "postgres":
        with _local_locks_guard:
            lock = _local_locks.setdefault(experiment.key, threading.Lock())
    with lock:
        return _refresh(
            executor,
            experiment,
            as_of,
            sources,
            source_names,
            late_lookback_hours,
            full_refresh,
            periods,
        )


def _refresh(
    executor: Executor,
    experiment: Experiment,
    as_of: datetime,
    sources: Mapping[str, Source],
    source_names: tuple[str, str],
    late_lookback_hours: float,
    full_refresh: bool,
    periods: Sequence[datetime] = (),
) -> tuple[list[SufficientStats], RefreshInfo]:
    as_of = plan.analysis_end(experiment, as_of)
    lookback_days = _lookback_days(experiment)
    digest = definition_hash(experiment, assignments=source_names[0], events=source_names[1])
    key = {"experiment_key": experiment.key}
    values: dict[str, Any] = {
        **plan.analysis_values(experiment, as_of),
        "event_names": sorted(
            {m.numerator_event for m in experiment.metrics}
            | {m.denominator_event for m in experiment.metrics if m.denominator_event}
        ),
        "sealed_before": utc_midnight(as_of - timedelta(hours=late_lookback_hours)),
    }

    first = [_block("read_state", key)]
    if executor.dialect == "postgres":
        first.insert(0, _block("lock", key))
    state_rows = execute_plan(executor, first, sources)["read_state"]
    state = (
        (
            _aware(state_rows[0]["watermark"]),
            _aware(state_rows[0]["sealed_before"]),
            state_rows[0]["definition_hash"],
        )
        if state_rows
        else None
    )
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

    # The analysed units exactly as the full pass builds them, and what changed since.
    units = execute_plan(
        executor,
        [
            *plan.stage_statements(experiment, as_of, periods),
            _block("refresh_units", {**key, "full": full}, relation="abflow_refresh_units"),
            _block("count_recomputed", {}),
        ],
        sources,
    )
    units_recomputed = int(units["count_recomputed"][0]["units"])

    forget = (
        ("forget_experiment_partials", "forget_experiment_seen")
        if full
        else ("forget_changed_units", "forget_gone_seen")
    )
    read_values = {
        **values,
        "read_from": events_from,
        # Gates, not filters: a false one removes that scan of events from the plan.
        "read_changed": units_recomputed > 0,
        "read_same": not full,
    }
    rows = execute_plan(
        executor,
        [
            *(_block(name, key, kind="execute") for name in forget),
            plan.with_event_filters(
                Statement(
                    "incremental_read",
                    plan.prune_aggregates(
                        canonical("queries/incremental_read.sql"),
                        experiment,
                        "final",
                        keep_counts=True,
                    ),
                    relation="abflow_read_partials",
                ),
                experiment,
            ).bind(read_values),
            Statement(
                "unit_values",
                plan.prune_aggregates(
                    canonical("queries/incremental_stats.sql"), experiment, "unit_events"
                ),
                relation="abflow_unit_values",
            ).bind(values),
            plan.final_statement(values),
            *plan.extra_statements(experiment, plan.analysis_values(experiment, as_of)),
            _block("count_sealed", {}),
            *(
                _inserting(_block(name, key, kind="execute"), full)
                for name in ("seal", "remember_seen")
            ),
            _block(
                "write_state",
                {
                    **key,
                    "as_of": as_of,
                    "sealed_before": values["sealed_before"],
                    "definition_hash": digest,
                    "mode": mode,
                },
                kind="execute",
            ),
        ],
        sources,
    )
    stats = extract.stats_with_extras(rows)
    info = RefreshInfo(
        mode=mode,
        reason=reason or "watermark",
        as_of=as_of,
        previous_watermark=previous_watermark,
        events_from=events_from,
        units_recomputed=units_recomputed,
        partial_rows_sealed=int(rows["count_sealed"][0]["sealed_rows"]),
        sealed_before=values["sealed_before"],
        full_scans=full_scans(experiment),
    )
    return stats, info


def full_scans(experiment: Experiment) -> tuple[str, ...]:
    """What an incremental refresh of this experiment still reads from all events, and why."""
    if plan.has_event_quantiles(experiment):
        return ("event-level quantile metrics (order statistics need every event value)",)
    return ()


def next_events_from(
    executor: Executor,
    experiment: Experiment,
    as_of: datetime,
    *,
    source_names: tuple[str, str],
    late_lookback_hours: float = DEFAULT_LATE_LOOKBACK_HOURS,
    full_refresh: bool = False,
) -> datetime | None:
    """Where an incremental refresh as of `as_of` would start reading events; None if full.

    Read before the refresh runs (it moves the state): the validation of an incremental run
    checks the events this refresh reads, not the whole history again.
    """
    as_of = plan.analysis_end(experiment, as_of)
    digest = definition_hash(experiment, assignments=source_names[0], events=source_names[1])
    rows = execute_plan(executor, [_block("read_state", {"experiment_key": experiment.key})], {})[
        "read_state"
    ]
    if not rows:
        return None
    state = (
        _aware(rows[0]["watermark"]),
        _aware(rows[0]["sealed_before"]),
        rows[0]["definition_hash"],
    )
    if _full_refresh_reason(state, digest, as_of, late_lookback_hours, requested=full_refresh):
        return None
    return state[1]


def _block(
    name: str,
    values: Mapping[str, Any],
    *,
    relation: str | None = None,
    kind: Literal["query", "execute"] = "query",
) -> Statement:
    query = canonical_block("queries/incremental_refresh.sql", name)
    return Statement(name, query, relation=relation, kind=kind).bind(values)


def _inserting(statement: Statement, full: bool) -> Statement:
    """An upsert of the state tables as a plain insert on the full path.

    The full path has deleted the experiment's rows first, so nothing can conflict, and the
    conflict checks would find every key's just-deleted version: at 5M benchmark events the
    seal's 1.3M rows took 11 s as upserts; a plain insert into a fresh table is 40% cheaper.
    """
    if full:
        statement.query.set("conflict", None)
    return statement


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


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


def _lookback_days(experiment: Experiment) -> int:
    return experiment.analysis.cuped.lookback_days if experiment.analysis.cuped else 0
