"""Synthetic benchmark data generated inside PostgreSQL (generate_series; no rows from Python)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import Connection, Engine

from abflow.definitions import Experiment, parse_experiment
from abflow.warehouse.experiments_repo import upsert_experiments
from abflow.warehouse.migrate import migrate

# Bump when the generated data changes shape: existing schemas are then regenerated.
GEN_VERSION = 1
EXPERIMENT_KEY = "bench_checkout"
OTHER_EXPERIMENT_KEY = "bench_other"
START_AT = datetime(2026, 1, 1, tzinfo=UTC)
AS_OF = datetime(2026, 1, 29, tzinfo=UTC)
DATA_END = datetime(2026, 1, 31, tzinfo=UTC)  # events after as_of exist and must be filtered out
EXPOSURE_SECONDS = 21 * 86_400  # first exposures spread over the first 21 days
LOOKBACK_DAYS = 14
NOISE_EVENT_SHARE = 0.2  # events of units outside the experiment
VARIANTS = ("control", "b", "c")
EVENT_NAMES = ("impression", "click", "purchase", "page_load", "session_start")

EXPERIMENT_DEFINITION: dict[str, Any] = {
    "key": EXPERIMENT_KEY,
    "name": "Benchmark: checkout page, three arms",
    "hypothesis": "Synthetic data for benchmarks/run.py.",
    "status": "running",
    "start_at": START_AT.isoformat(),
    "variants": [
        {"key": "control", "weight": 0.333334, "control": True},
        {"key": "b", "weight": 0.333333},
        {"key": "c", "weight": 0.333333},
    ],
    "metrics": [
        {"key": "conversion", "kind": "proportion", "event": "purchase", "window_hours": 168,
         "role": "primary", "mde": 0.05},
        {"key": "revenue", "kind": "mean", "event": "purchase", "value": "sum"},
        {"key": "ctr", "kind": "ratio", "numerator": {"event": "click"},
         "denominator": {"event": "impression"}},
        {"key": "latency_ms", "kind": "mean", "event": "page_load", "value": "mean",
         "direction": "decrease", "role": "guardrail", "non_inferiority_margin": 0.05},
        {"key": "sessions", "kind": "mean", "event": "session_start", "value": "count"},
    ],
    "analysis": {"cuped": {"lookback_days": LOOKBACK_DAYS}, "min_sample_size": 150},
    "decision": {"auto_promote": False, "min_runtime_days": 3},
}

# Uniform [0, 1) from (row number, stream): deterministic, so every size is reproducible.
_RAND = """
create or replace function {schema}.bench_rand(i bigint, stream bigint) returns double precision
language sql immutable parallel safe
as $$ select (hashint8extended(i, stream) & 281474976710655)::float8 / 281474976710656.0 $$
"""

_META = """
create table if not exists {schema}.bench_meta (
    gen_version integer not null,
    events bigint not null,
    units bigint not null,
    generated_at timestamptz not null default now(),
    seconds double precision not null
)
"""

# Experiment units u1..uN: first exposure at a pseudo-random instant of the first 21 days,
# variant u mod 3; 10% see a repeat exposure, 0.5% are also exposed to another arm (excluded).
_ASSIGNMENTS = """
insert into {schema}.assignments (experiment_key, unit_id, variant_key, assigned_at, attributes)
with units as (
    select
        u,
        (array['control', 'b', 'c'])[1 + u %% 3] as variant_key,
        %(start)s::timestamptz + ((u * 7919) %% %(exposure_seconds)s) * interval '1 second' as t0,
        jsonb_build_object('country', (array['US', 'DE', 'FR', 'GB', 'IN'])[1 + u %% 5]) as attrs
    from generate_series(1::bigint, %(units)s::bigint) as u
)
select %(key)s, 'u' || u, variant_key, t0, attrs from units
union all
select %(key)s, 'u' || u, variant_key,
       t0 + {schema}.bench_rand(u, 11) * interval '2 days', attrs
from units where {schema}.bench_rand(u, 12) < 0.10
union all
select %(key)s, 'u' || u, (array['control', 'b', 'c'])[1 + (u + 1) %% 3],
       t0 + interval '1 hour', attrs
from units where {schema}.bench_rand(u, 13) < 0.005
union all
select %(other_key)s, 'n' || n, (array['a', 'b'])[1 + n %% 2],
       %(start)s::timestamptz + ((n * 7919) %% %(exposure_seconds)s) * interval '1 second',
       null
from generate_series(1::bigint, %(noise_units)s::bigint) as n
"""

# One event type per row from a uniform draw r; arms b and c shift clicks and purchases up a bit.
_EVENT_NAME = """
case
    when r < 0.40 then 'impression'
    when r < 0.52 + 0.004 * v then 'click'
    when r < 0.555 + 0.006 * v then 'purchase'
    when r < 0.80 then 'page_load'
    when r < 0.90 then 'session_start'
    else 'scroll'
end
"""

_EVENT_VALUE = """
case
    when r >= 0.52 + 0.004 * v and r < 0.555 + 0.006 * v then floor(1000 + 7000 * rv) / 100
    when r >= 0.555 + 0.006 * v and r < 0.80 then 150 + 400 * rv * rv - 5 * v
end
"""

# Experiment events: a pseudo-random unit, from 14 days before its exposure to DATA_END.
_EVENTS = """
insert into {schema}.events (unit_id, event_name, value, occurred_at)
with draws as (
    select
        1 + floor({schema}.bench_rand(i, 1) * %(units)s)::bigint as u,
        {schema}.bench_rand(i, 2) as r,
        {schema}.bench_rand(i, 3) as rt,
        {schema}.bench_rand(i, 4) as rv
    from generate_series(1::bigint, %(events)s::bigint) as i
),
placed as (
    select
        u, r, rt, rv, u %% 3 as v,
        %(start)s::timestamptz + ((u * 7919) %% %(exposure_seconds)s) * interval '1 second'
            - %(lookback)s * interval '1 day' as lo
    from draws
)
select 'u' || u, {name}, {value},
       lo + rt * extract(epoch from %(end)s::timestamptz - lo) * interval '1 second'
from placed
"""

# Background noise: units outside the experiment, uniformly over the whole data range.
_NOISE = """
insert into {schema}.events (unit_id, event_name, value, occurred_at)
with placed as (
    select
        1 + floor({schema}.bench_rand(i, 5) * %(noise_units)s)::bigint as u,
        {schema}.bench_rand(i, 6) as r,
        {schema}.bench_rand(i, 7) as rt,
        {schema}.bench_rand(i, 8) as rv,
        0 as v
    from generate_series(1::bigint, %(events)s::bigint) as i
)
select 'n' || u, {name}, {value},
       %(lo)s::timestamptz
           + rt * extract(epoch from %(end)s::timestamptz - %(lo)s) * interval '1 second'
from placed
"""

# Same definitions as sql/migrations/001_tables.sql: dropped for the bulk load, then rebuilt.
_INDEXES = (
    ("events_unit_time_idx",
     "create index events_unit_time_idx on {schema}.events (unit_id, occurred_at)"),
    ("events_time_idx", "create index events_time_idx on {schema}.events (occurred_at)"),
    ("assignments_experiment_unit_idx",
     "create index assignments_experiment_unit_idx"
     " on {schema}.assignments (experiment_key, unit_id, assigned_at)"),
)


@dataclass(frozen=True)
class GeneratedData:
    """What a schema holds for one size, and whether this call generated it."""

    schema: str
    events: int
    units: int
    assignments_rows: int
    reused: bool
    seconds: float


DEFAULT_EVENTS_PER_UNIT = 10


def schema_for(events: int, events_per_unit: int = DEFAULT_EVENTS_PER_UNIT) -> str:
    """Dedicated schema per size, e.g. bench_1m, bench_20m, bench_5m_epu100 (reusable)."""
    if events % 1_000_000 == 0:
        name = f"bench_{events // 1_000_000}m"
    elif events % 1_000 == 0:
        name = f"bench_{events // 1_000}k"
    else:
        name = f"bench_{events}"
    return name if events_per_unit == DEFAULT_EVENTS_PER_UNIT else f"{name}_epu{events_per_unit}"


def experiment() -> Experiment:
    """The benchmark experiment: 3 arms, 5 metrics (proportion, mean, ratio, guardrail, count)."""
    return parse_experiment(EXPERIMENT_DEFINITION, "benchmarks/generate.py")


def sizes_for(events: int, events_per_unit: int = DEFAULT_EVENTS_PER_UNIT) -> dict[str, int]:
    """Row counts: experiment units = events / events_per_unit, noise units a quarter of that."""
    units = max(1, events // events_per_unit)
    noise_events = round(events * NOISE_EVENT_SHARE)
    return {
        "units": units,
        "noise_units": max(1, units // 4),
        "experiment_events": events - noise_events,
        "noise_events": noise_events,
    }


def raw_connection(conn: Connection) -> psycopg.Connection[Any]:
    """The psycopg connection under a SQLAlchemy connection (for composed SQL and cursors)."""
    raw = conn.connection.dbapi_connection
    assert isinstance(raw, psycopg.Connection)
    return raw


def _exec(conn: Connection, template: str, schema: str, params: dict[str, Any] | None = None,
          **parts: str) -> None:
    """Run one statement with the schema (and trusted SQL fragments) composed in."""
    fragments = {k: sql.SQL(v) for k, v in parts.items()}
    query = sql.SQL(template).format(schema=sql.Identifier(schema), **fragments)
    with raw_connection(conn).cursor() as cur:
        cur.execute(query, params)


def _existing(conn: Connection, schema: str, events: int, units: int) -> tuple[int, int] | None:
    """(units, assignment rows) if the schema already holds this size's data, else None."""
    with raw_connection(conn).cursor() as cur:
        cur.execute("select to_regclass(%s)", (f"{schema}.bench_meta",))
        row = cur.fetchone()
        if row is None or row[0] is None:
            return None
        cur.execute(
            sql.SQL(
                "select units from {} where gen_version = %s and events = %s and units = %s"
            ).format(sql.Identifier(schema, "bench_meta")),
            (GEN_VERSION, events, units),
        )
        meta = cur.fetchone()
        if meta is None:
            return None
        cur.execute(
            sql.SQL("select count(*) from {}").format(sql.Identifier(schema, "assignments"))
        )
        count = cur.fetchone()
    return int(meta[0]), int(count[0]) if count else 0


def ensure_data(engine: Engine, schema: str, events: int, *, force: bool = False,
                events_per_unit: int = DEFAULT_EVENTS_PER_UNIT) -> GeneratedData:
    """Create (or reuse) the schema's assignments/events for `events` rows, then VACUUM ANALYZE."""
    n = sizes_for(events, events_per_unit)
    migrate(engine, schema)
    with engine.begin() as conn:
        upsert_experiments(conn, [experiment()])
        found = None if force else _existing(conn, schema, events, n["units"])
    if found is not None:
        return GeneratedData(schema, events, found[0], found[1], True, 0.0)

    params: dict[str, Any] = {
        "start": START_AT,
        "end": DATA_END,
        "lo": START_AT - timedelta(days=LOOKBACK_DAYS),
        "lookback": LOOKBACK_DAYS,
        "exposure_seconds": EXPOSURE_SECONDS,
        "key": EXPERIMENT_KEY,
        "other_key": OTHER_EXPERIMENT_KEY,
        "units": n["units"],
        "noise_units": n["noise_units"],
    }
    started = time.perf_counter()
    with engine.begin() as conn:
        _exec(conn, "set local maintenance_work_mem = '1GB'", schema)
        _exec(conn, "set local synchronous_commit = off", schema)
        _exec(conn, _RAND, schema)
        _exec(conn, _META, schema)
        _exec(conn, "truncate {schema}.bench_meta, {schema}.assignments, {schema}.events", schema)
        for name, _ in _INDEXES:
            _exec(conn, "drop index if exists {schema}." + name, schema)
        _exec(conn, _ASSIGNMENTS, schema, params)
        _exec(conn, _EVENTS, schema, {**params, "events": n["experiment_events"]},
              name=_EVENT_NAME, value=_EVENT_VALUE)
        _exec(conn, _NOISE, schema, {**params, "events": n["noise_events"]},
              name=_EVENT_NAME, value=_EVENT_VALUE)
        for _, ddl in _INDEXES:
            _exec(conn, ddl, schema)
    # VACUUM (not only ANALYZE): sets hint bits and the visibility map once, so the first timed
    # scan does not pay for them and every measured query sees the same table state.
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        _exec(conn, "vacuum (freeze, analyze) {schema}.assignments", schema)
        _exec(conn, "vacuum (freeze, analyze) {schema}.events", schema)
    seconds = time.perf_counter() - started
    with engine.begin() as conn:
        _exec(conn, "insert into {schema}.bench_meta (gen_version, events, units, seconds)"
                    " values (%(v)s, %(e)s, %(u)s, %(s)s)", schema,
              {"v": GEN_VERSION, "e": events, "u": n["units"], "s": seconds})
        found = _existing(conn, schema, events, n["units"])
    assert found is not None
    return GeneratedData(schema, events, found[0], found[1], False, seconds)
