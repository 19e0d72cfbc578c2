"""Incremental refresh (abflow.warehouse.incremental) against the full one-pass extraction."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypedDict

import pytest
from sqlalchemy import Connection, Engine, text

from abflow.definitions import Experiment, parse_experiment
from abflow.results import SufficientStats
from abflow.settings import Settings
from abflow.warehouse import extract
from abflow.warehouse.engines import PostgresExecutor
from abflow.warehouse.incremental import (
    RefreshInfo,
    fetch_sufficient_stats_incremental,
    next_events_from,
    utc_midnight,
)
from abflow.warehouse.validate import validate_postgres
from tests.engines.test_equality import _flat
from tests.integration.conftest import DEMO_AS_OF

START = datetime(2026, 3, 1, tzinfo=UTC)
UNITS = 2_000
EVENTS = 200_000
# Exposures spread over the first 20 days; events from 20 days before the start to day 40.
EXPOSURE_DAYS = 20
EVENT_SPAN = (START - timedelta(days=20), START + timedelta(days=40))


def _definition(key: str, **changes: Any) -> dict[str, Any]:
    """Every metric kind and aggregation, CUPED, a segment dimension and three arms."""
    definition: dict[str, Any] = {
        "key": key,
        "name": "incremental refresh test",
        "status": "running",
        "start_at": START.isoformat(),
        "variants": [
            {"key": "control", "weight": 0.34, "control": True},
            {"key": "b", "weight": 0.33},
            {"key": "c", "weight": 0.33},
        ],
        "metrics": [
            {
                "key": "conversion",
                "kind": "proportion",
                "event": "purchase",
                "window_hours": 72,
                "role": "primary",
            },
            {"key": "revenue", "kind": "mean", "event": "purchase", "value": "sum"},
            {"key": "order_value", "kind": "mean", "event": "purchase", "value": "mean"},
            {
                "key": "max_order",
                "kind": "mean",
                "event": "purchase",
                "value": "max",
                "window_hours": 240,
            },
            {"key": "sessions", "kind": "mean", "event": "session_start", "value": "count"},
            {
                "key": "ctr",
                "kind": "ratio",
                "numerator": {"event": "click"},
                "denominator": {"event": "impression"},
            },
            {
                "key": "latency",
                "kind": "ratio",
                "numerator": {"event": "page_load", "value": "sum"},
                "denominator": {"event": "page_load", "value": "count"},
                "window_hours": 168,
            },
        ],
        "analysis": {"cuped": {"lookback_days": 7}, "segments": ["country"]},
    }
    definition.update(changes)
    return definition


class Sources(TypedDict):
    """The two source relations, as keyword arguments."""

    assignments: str
    events: str


@dataclass(frozen=True)
class OwnData:
    """A private assignments/events pair in the session schema, and an experiment over it."""

    assignments: str
    events: str
    experiment: Experiment

    def sources(self) -> Sources:
        """Keyword arguments naming the two source relations."""
        return {"assignments": self.assignments, "events": self.events}


@pytest.fixture
def own(engine: Engine) -> Iterator[OwnData]:
    """Deterministic data in private tables (never the shared ones), dropped afterwards."""
    tag = uuid.uuid4().hex[:8]
    a, e = f"incr_assignments_{tag}", f"incr_events_{tag}"
    # Parameters: exposures over EXPOSURE_DAYS; 10% repeat exposures, 1% in a second arm
    # (excluded), 10% without a country; purchases with a null value now and then.
    with engine.begin() as conn:
        conn.execute(text(f"create table {a} (like assignments including all)"))
        conn.execute(text(f"create table {e} (like events including all)"))
        conn.execute(
            text(f"""
            insert into {a} (experiment_key, unit_id, variant_key, assigned_at, attributes)
            with units as (
                select u, (array['control', 'b', 'c'])[1 + u % 3] as v,
                       :start + ((u * 7919) % (:days * 86400)) * interval '1 second' as t0,
                       case when u % 10 = 0 then '{{}}'::jsonb else jsonb_build_object(
                           'country', (array['DE', 'FR', 'US', 'GB'])[1 + (u / 3) % 4])
                       end as attrs
                from generate_series(1, :units) as u
            )
            select :key, 'iu' || u, v, t0, attrs from units
            union all
            select :key, 'iu' || u, v, t0 + interval '30 hours', attrs from units where u % 10 = 3
            union all
            select :key, 'iu' || u, (array['control', 'b', 'c'])[1 + (u + 1) % 3],
                   t0 + interval '1 hour', attrs
            from units where u % 100 = 7
            """),  # noqa: S608 - table names are generated above, values are bound
            {"start": START, "days": EXPOSURE_DAYS, "units": UNITS, "key": f"incr_{tag}"},
        )
        conn.execute(
            text(f"""
            insert into {e} (unit_id, event_name, value, occurred_at)
            with draws as (
                select i,
                       (hashint8extended(i, 1) & 65535)::float8 / 65536 as r,
                       (hashint8extended(i, 2) & 16777215)::float8 / 16777216 as rt,
                       (hashint8extended(i, 3) & 65535)::float8 / 65536 as rv,
                       1 + (hashint8extended(i, 4) & 1048575) % (:units * 11 / 10) as u
                from generate_series(1, :events) as i
            )
            select 'iu' || u,
                   case when r < 0.35 then 'impression' when r < 0.5 then 'click'
                        when r < 0.6 then 'purchase' when r < 0.8 then 'page_load'
                        when r < 0.9 then 'session_start' else 'scroll' end,
                   case when r >= 0.5 and r < 0.6 and rv > 0.1 then round((5 + 95 * rv)::numeric, 2)
                        when r >= 0.6 and r < 0.8 then 100 + 300 * rv end,
                   :lo + rt * (:hi - :lo)
            from draws
            """),  # noqa: S608
            {"units": UNITS, "events": EVENTS, "lo": EVENT_SPAN[0], "hi": EVENT_SPAN[1]},
        )
        conn.execute(text(f"analyze {a}"))
        conn.execute(text(f"analyze {e}"))
    yield OwnData(a, e, parse_experiment(_definition(f"incr_{tag}"), "test"))
    with engine.begin() as conn:
        conn.execute(text(f"drop table if exists {a}, {e}"))
        for table in ("unit_metric_partials", "unit_exposures_seen", "refresh_state"):
            conn.execute(
                text(f"delete from {table} where experiment_key = :k"),  # noqa: S608
                {"k": f"incr_{tag}"},
            )


def _full(
    engine: Engine, experiment: Experiment, as_of: datetime, *, assignments: str, events: str
) -> list[SufficientStats]:
    with engine.begin() as conn:
        return extract.fetch_sufficient_stats(
            conn, experiment, as_of, assignments=assignments, events=events
        )


def _refresh(
    engine: Engine,
    experiment: Experiment,
    as_of: datetime,
    *,
    assignments: str,
    events: str,
    late_lookback_hours: float = 48,
    full_refresh: bool = False,
) -> tuple[list[SufficientStats], RefreshInfo]:
    with engine.begin() as conn:
        return fetch_sufficient_stats_incremental(
            conn,
            experiment,
            as_of,
            assignments=assignments,
            events=events,
            late_lookback_hours=late_lookback_hours,
            full_refresh=full_refresh,
        )


def _differences(got: list[SufficientStats], want: list[SufficientStats]) -> list[str]:
    """Every field that differs by more than 1e-9 (relative or absolute)."""
    a = {(r.metric_key, r.variant_key, r.segment): _flat(r.as_row()) for r in got}
    b = {(r.metric_key, r.variant_key, r.segment): _flat(r.as_row()) for r in want}
    if a.keys() != b.keys():
        return [f"rows differ: {sorted(a.keys() ^ b.keys())}"]
    out = []
    for k, row in a.items():
        for field, x in row.items():
            y = b[k][field]
            same = (
                x == y
                if x is None or y is None or isinstance(x, str)
                else math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9)
            )
            if not same:
                out.append(f"{k} {field}: {x} != {y}")
    return out


@pytest.mark.parametrize("key", ["checkout_button", "followup_timing", "enrichment_strategy"])
def test_demo_refreshes_equal_full_pass(
    key: str, engine: Engine, demo_loaded: dict[str, Any]
) -> None:
    """Full refresh, then two daily incremental refreshes: each equals a full pass."""
    experiment = demo_loaded["experiments"][key]
    sources: Sources = {"assignments": "assignments", "events": "events"}
    days = [DEMO_AS_OF - timedelta(days=3), DEMO_AS_OF - timedelta(days=1, hours=5), DEMO_AS_OF]
    for i, as_of in enumerate(days):
        stats, info = _refresh(engine, experiment, as_of, full_refresh=i == 0, **sources)
        assert info.mode == ("full" if i == 0 else "incremental"), info
        assert stats, "no statistics"
        assert _differences(stats, _full(engine, experiment, as_of, **sources)) == []


def test_own_data_refreshes_equal_full_pass(engine: Engine, own: OwnData) -> None:
    """Daily refreshes through and after the exposure period (new units every day) stay exact."""
    first = START + timedelta(days=5, hours=7)
    stats, info = _refresh(engine, own.experiment, first, **own.sources())
    assert (info.mode, info.reason) == ("full", "first refresh")
    assert _differences(stats, _full(engine, own.experiment, first, **own.sources())) == []
    for day in range(1, 25, 3):
        as_of = first + timedelta(days=day)
        stats, info = _refresh(engine, own.experiment, as_of, **own.sources())
        assert info.mode == "incremental", info
        assert _differences(stats, _full(engine, own.experiment, as_of, **own.sources())) == []
        if as_of < START + timedelta(days=EXPOSURE_DAYS):
            assert info.units_recomputed > 0  # units first exposed since the last refresh


def test_late_events_inside_lookback_are_picked_up(engine: Engine, own: OwnData) -> None:
    d1 = START + timedelta(days=25)
    d2 = d1 + timedelta(days=1)
    _refresh(engine, own.experiment, d1, **own.sources())
    before = _full(engine, own.experiment, d2, **own.sources())
    with engine.begin() as conn:
        # Arrives after the d1 refresh but happened before it, within the 48 h lookback.
        _insert_events(
            conn,
            own.events,
            [
                ("iu11", "purchase", 1000.0, d1 - timedelta(hours=30)),
                ("iu12", "click", None, d1 - timedelta(hours=2)),
                ("iu13", "page_load", 50.0, d1 + timedelta(hours=3)),
            ],
        )
    want = _full(engine, own.experiment, d2, **own.sources())
    assert _differences(before, want), "the late events should change the statistics"
    stats, info = _refresh(engine, own.experiment, d2, **own.sources())
    assert info.mode == "incremental"
    assert info.events_from == utc_midnight(d1 - timedelta(hours=48))
    assert _differences(stats, want) == []


def test_late_event_beyond_lookback_needs_full_refresh(engine: Engine, own: OwnData) -> None:
    """The documented trade-off: older late arrivals wait for a full refresh."""
    d1 = START + timedelta(days=25)
    d2 = d1 + timedelta(days=1)
    _refresh(engine, own.experiment, d1, late_lookback_hours=24, **own.sources())
    with engine.begin() as conn:
        _insert_events(conn, own.events, [("iu21", "purchase", 5000.0, d1 - timedelta(days=4))])
    want = _full(engine, own.experiment, d2, **own.sources())
    stale, info = _refresh(engine, own.experiment, d2, late_lookback_hours=24, **own.sources())
    assert info.mode == "incremental"
    missed = _differences(stale, want)
    assert missed, "an event older than the lookback is not read incrementally"
    assert all("'revenue'" in d or "'order_value'" in d or "'max_order'" in d for d in missed)
    fresh, info = _refresh(
        engine, own.experiment, d2, late_lookback_hours=24, full_refresh=True, **own.sources()
    )
    assert (info.mode, info.reason) == ("full", "full refresh requested")
    assert _differences(fresh, want) == []


def test_changed_exposures_are_recomputed(engine: Engine, own: OwnData) -> None:
    """A late, earlier exposure moves a unit; a second arm removes one; a late unit is new."""
    d1 = START + timedelta(days=25)
    d2 = d1 + timedelta(days=1)
    _refresh(engine, own.experiment, d1, **own.sources())
    key = own.experiment.key
    with engine.begin() as conn:
        conn.execute(
            text(
                f"insert into {own.assignments}"  # noqa: S608
                " (experiment_key, unit_id, variant_key, assigned_at, attributes) values"
                " (:k, 'iu31', 'b', :moved, null),"  # iu31 is in arm b: exposure moves earlier
                " (:k, 'iu32', 'control', :t, null),"  # iu32 is in arm c: now in two arms
                " (:k, 'iu_late', 'c', :t, '{\"country\": \"DE\"}')"  # a new unit, seen late
            ),
            {"k": key, "moved": START + timedelta(hours=1), "t": START + timedelta(days=3)},
        )
        _insert_events(
            conn,
            own.events,
            [
                # before the new exposure of iu31: now post-exposure (was pre-period/contamination)
                ("iu31", "purchase", 70.0, START + timedelta(hours=2)),
                ("iu_late", "purchase", 9.0, START + timedelta(days=1)),  # pre-period, 3 weeks old
                ("iu_late", "purchase", 40.0, START + timedelta(days=3, hours=1)),
            ],
        )
    stats, info = _refresh(engine, own.experiment, d2, **own.sources())
    assert info.mode == "incremental"
    assert info.units_recomputed == 2  # iu31 (moved) and iu_late (new)
    assert _differences(stats, _full(engine, own.experiment, d2, **own.sources())) == []


def test_full_path_when_definition_changes_or_as_of_goes_back(engine: Engine, own: OwnData) -> None:
    d1 = START + timedelta(days=25)
    _refresh(engine, own.experiment, d1, **own.sources())
    _, info = _refresh(engine, own.experiment, d1 + timedelta(days=1), **own.sources())
    assert info.mode == "incremental"

    changed = parse_experiment(
        _definition(own.experiment.key, analysis={"cuped": {"lookback_days": 3}}), "test"
    )
    as_of = d1 + timedelta(days=2)
    stats, info = _refresh(engine, changed, as_of, **own.sources())
    assert (info.mode, info.reason) == ("full", "definition or source changed")
    assert _differences(stats, _full(engine, changed, as_of, **own.sources())) == []

    back = d1 - timedelta(days=4)  # a backfill into the past
    stats, info = _refresh(engine, changed, back, **own.sources())
    assert (info.mode, info.reason) == ("full", "as_of before the watermark")
    assert _differences(stats, _full(engine, changed, back, **own.sources())) == []

    _, info = _refresh(
        engine, changed, back + timedelta(days=1), late_lookback_hours=96, **own.sources()
    )
    assert (info.mode, info.reason) == ("full", "late-arrival lookback widened")

    capped = changed.model_copy(update={"end_at": back + timedelta(days=1, hours=12)})
    stats, info = _refresh(
        engine, capped, back + timedelta(days=5), late_lookback_hours=96, **own.sources()
    )
    assert info.mode == "incremental" and info.as_of == capped.end_at
    assert (
        _differences(stats, _full(engine, capped, back + timedelta(days=5), **own.sources())) == []
    )


def test_incremental_refresh_reads_only_the_open_days(engine: Engine, own: OwnData) -> None:
    """Counted by the server: events rows read by the refresh = events in its time window."""
    d1 = START + timedelta(days=30)  # after the exposure period: no unit is new
    d2 = d1 + timedelta(days=1)
    # the exposure-age cohorts (on in this experiment) come from the partials too: no full scan
    experiment = own.experiment
    assert experiment.analysis.exposure_age
    _, info = _refresh(engine, experiment, d1, **own.sources())
    assert info.full_scans == ()
    with engine.begin() as conn:
        counts = conn.execute(
            text(
                f"select count(*), count(*) filter (where occurred_at >= :lo"  # noqa: S608
                f" and occurred_at <= :hi) from {own.events}"
            ),
            {"lo": utc_midnight(d1 - timedelta(hours=48)), "hi": d2},
        ).one()
    total, in_window = int(counts[0]), int(counts[1])
    with engine.begin() as conn:
        before = _reads(conn, own.events)
        _, info = fetch_sufficient_stats_incremental(
            conn, experiment, d2, assignments=own.assignments, events=own.events
        )
        seq_read, idx_fetched = (
            x - y for x, y in zip(_reads(conn, own.events), before, strict=True)
        )
    assert info.mode == "incremental" and info.units_recomputed == 0 and info.full_scans == ()
    assert info.events_from == utc_midnight(d1 - timedelta(hours=48))
    assert in_window < total / 8
    # No sequential scan of events; the index scan fetched the rows of the window (plus the few
    # the planner reads when it probes the index for the actual min/max of occurred_at).
    assert seq_read == 0
    assert in_window <= idx_fetched <= in_window + 16


def test_incremental_validation_checks_only_the_events_the_refresh_reads(
    engine: Engine, settings: Settings, own: OwnData
) -> None:
    """Validation work follows the new events: the events suite sees the refresh's window only,
    read through the time index (no sequential scan of events), and the first, full refresh is
    validated over the whole history."""
    d1 = START + timedelta(days=30)
    d2 = d1 + timedelta(days=1)
    names = (own.assignments, own.events)
    with engine.begin() as conn:
        assert (
            next_events_from(PostgresExecutor(conn), own.experiment, d1, source_names=names) is None
        )
    _refresh(engine, own.experiment, d1, **own.sources())
    with engine.begin() as conn:
        since = next_events_from(PostgresExecutor(conn), own.experiment, d2, source_names=names)
        full = next_events_from(
            PostgresExecutor(conn), own.experiment, d2, source_names=names, full_refresh=True
        )
    assert since == utc_midnight(d1 - timedelta(hours=48)) and full is None
    with engine.begin() as conn:
        expected = conn.execute(
            text(
                f"select count(*) from {own.events} where occurred_at >= :lo"  # noqa: S608
                " and occurred_at <= :hi and event_name in"
                " ('purchase', 'session_start', 'click', 'impression', 'page_load')"
                f" and unit_id in (select unit_id from {own.assignments}"
                " where experiment_key = :key and assigned_at <= :hi)"
            ),
            {"lo": since, "hi": d2, "key": own.experiment.key},
        ).scalar_one()
        before = _reads(conn, own.events)
        checks = validate_postgres(
            conn,
            settings.schema_name,
            own.experiment,
            d2,
            assignments_source=own.assignments,
            events_source=own.events,
            events_from=since,
        )
        seq_read, _ = (x - y for x, y in zip(_reads(conn, own.events), before, strict=True))
    by_name = {c.check_name: c for c in checks}
    counted = by_name["gx_events_occurred_at_not_null"]
    assert counted.details["element_count"] == expected > 0
    assert counted.details["events_from"] == since.isoformat()
    assert seq_read == 0
    # the refresh that follows reads from the same instant
    _, info = _refresh(engine, own.experiment, d2, **own.sources())
    assert info.mode == "incremental" and info.events_from == since


def _reads(conn: Connection, table: str) -> tuple[int, int]:
    """Rows of `table` read by sequential scans and fetched by index scans in this transaction."""
    row = conn.execute(
        text(
            "select coalesce(seq_tup_read, 0), coalesce(idx_tup_fetch, 0)"
            " from pg_stat_xact_user_tables where relid = cast(:t as regclass)"
        ),
        {"t": table},
    ).one()
    return int(row[0]), int(row[1])


def _insert_events(
    conn: Connection, table: str, rows: list[tuple[str, str, float | None, datetime]]
) -> None:
    conn.execute(
        text(
            f"insert into {table} (unit_id, event_name, value, occurred_at)"  # noqa: S608
            " values (:u, :n, :v, :t)"
        ),
        [{"u": u, "n": n, "v": v, "t": t} for u, n, v, t in rows],
    )
