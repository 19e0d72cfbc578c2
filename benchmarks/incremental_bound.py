"""How fast a daily refresh by differences could be: the floor under issue 15's target 3.

Target 3 asks for a daily incremental refresh at <= 0.25x a full pass on the default benchmark
density. This script times, on a schema `benchmarks.run` generated (default `bench_5m`), the
statements any design that updates per-arm sums by differences must run, against the stored
partials of `unit_metric_partials` as they are:

1. a full refresh as of the day before as_of (committed), then `VACUUM (ANALYZE)` of the state
   tables (the day that passes), then the daily refresh as of as_of, rolled back;
2. inside the daily refresh, just before its `unit_values` statement (which merges every pair's
   partials, the current design), the differences design's own steps on the touched pairs only:
   the (unit, metric) pairs the refresh read events of, their sealed partials (a join with the
   stored table), their per-unit values with the events read ("new") and without them
   ("old"), and the signed sums of the two by metric and arm.

The floor is what the daily refresh would still cost with that design:
units stages + the read + those steps + the seal, against a full pass (`fetch_sufficient_stats`,
timed here too). It leaves out, in the design's favour, the final steps (exposure age, the
statistics of the differences), segments, the moved/new units' re-read, and, with a lookback,
a third version of the values: "old" here is the sealed part alone, which is the value the last
refresh used only when that refresh read nothing after it (the fifth session's attempt computed
all three). `--lookback-hours 0` asks what it would be if late arrivals never had to be re-read
(only the new day is read); the default 48 is abflow's.

    .venv/bin/python -m benchmarks.incremental_bound --schema bench_5m
    .venv/bin/python -m benchmarks.incremental_bound --schema bench_5m --lookback-hours 0
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, cast

import psycopg
from sqlalchemy import Engine

from abflow.settings import Settings
from abflow.warehouse import incremental
from abflow.warehouse.dialects import Rendered
from abflow.warehouse.engine import make_engine
from abflow.warehouse.engines import PostgresExecutor
from abflow.warehouse.extract import default_sources, fetch_sufficient_stats
from benchmarks import generate
from benchmarks.run import DATA_DIR, a_day_passes, apply_settings

SOURCES = ("assignments", "events")
SETTINGS = {"enable_indexscan": "off"}  # as the published benchmark runs
# The stored partials of the touched pairs and an empty read (the "old" values) stand in for
# the tables the rendered unit_values statement names.
DIFFERENCE_STEPS: list[tuple[str, str]] = [
    (
        "touched pairs",
        "create temp table bound_keys as "
        "select distinct unit_id, metric_key from abflow_read_partials",
    ),
    ("analyze touched", "analyze bound_keys"),
    (
        "their sealed partials",
        "create temp table bound_sealed as select p.* "
        "from unit_metric_partials as p inner join bound_keys as k "
        "on k.unit_id = p.unit_id and k.metric_key = p.metric_key "
        "where p.experiment_key = %(experiment_key)s",
    ),
    ("analyze sealed", "analyze bound_sealed"),
    (
        "empty read",
        "create temp table bound_empty as select * from abflow_read_partials where false",
    ),
]
SIGNED_SUMS = (
    "select metric_id, variant_key, sum(s * y), sum(s * y * y), sum(s * x), sum(s * x * x), "
    "sum(s * x * y), sum(s * c), sum(s * c * c), sum(s * c * y), "
    "sum(s * y_0), sum(s * y_0 * y_0), sum(s * y_1), sum(s * y_1 * y_1), "
    "sum(s * y_2), sum(s * y_2 * y_2), sum(s * y_3), sum(s * y_3 * y_3) "
    "from (select 1 as s, * from bound_new union all select -1 as s, * from bound_old) as v "
    "group by metric_id, variant_key"
)


class BoundExecutor(PostgresExecutor):
    """Runs the refresh's statements, timing each, and the differences steps before unit_values."""

    def __init__(self, conn: Any, experiment_key: str, *, probe: bool) -> None:
        super().__init__(conn)
        self.experiment_key = experiment_key
        self.probe = probe
        self.timings: dict[str, float] = {}

    def run(self, statements: Sequence[Rendered]) -> dict[str, list[dict[str, Any]]]:
        raw = cast(psycopg.Connection, self.conn.connection.dbapi_connection)
        out: dict[str, list[dict[str, Any]]] = {}
        with raw.cursor() as cur:
            for st in statements:
                if st.name == "unit_values" and self.probe:
                    self._differences(cur, st)
                started = time.perf_counter()
                cur.execute(st.sql.encode(), st.params, prepare=False)
                if st.kind == "query":
                    names = [d.name for d in cur.description or ()]
                    out[st.name] = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
                self._add(st.name, time.perf_counter() - started)
        return out

    def _add(self, name: str, seconds: float) -> None:
        self.timings[name] = self.timings.get(name, 0.0) + seconds

    def _differences(self, cur: psycopg.Cursor[Any], st: Rendered) -> None:
        params = {"experiment_key": self.experiment_key}
        for name, text in DIFFERENCE_STEPS:
            started = time.perf_counter()
            cur.execute(text.encode(), params, prepare=False)
            self._add(f"~ {name}", time.perf_counter() - started)
        for version, renames in (
            ("new", {"abflow_unit_values": "bound_new", "unit_metric_partials": "bound_sealed"}),
            (
                "old",
                {
                    "abflow_unit_values": "bound_old",
                    "unit_metric_partials": "bound_sealed",
                    "abflow_read_partials": "bound_empty",
                },
            ),
        ):
            text = st.sql
            for old, new in renames.items():
                text = text.replace(old, new)
            started = time.perf_counter()
            cur.execute(text.encode(), st.params, prepare=False)
            self._add(f"~ values {version}", time.perf_counter() - started)
        started = time.perf_counter()
        cur.execute(SIGNED_SUMS.encode(), prepare=False)
        self._add("~ signed sums", time.perf_counter() - started)


def refresh(engine: Engine, *, daily: bool, lookback: float) -> dict[str, float]:
    """One refresh in one transaction (committed when full, rolled back when daily)."""
    experiment = generate.experiment()
    as_of = generate.AS_OF if daily else generate.AS_OF - timedelta(days=1)
    with engine.connect() as conn:
        tx = conn.begin()
        apply_settings(conn, SETTINGS)
        executor = BoundExecutor(conn, experiment.key, probe=daily)
        started = time.perf_counter()
        _, info = incremental.refresh(
            executor,
            experiment,
            as_of,
            default_sources(*SOURCES),
            source_names=SOURCES,
            late_lookback_hours=lookback,
            full_refresh=not daily,
        )
        executor.timings["(refresh)"] = time.perf_counter() - started
        print(
            f"{'daily' if daily else 'full'} refresh: {info.mode}, events from "
            f"{info.events_from:%Y-%m-%d}, {info.partial_rows_sealed:,} pairs sealed"
        )
        if daily:
            tx.rollback()
        else:
            tx.commit()
    return executor.timings


def full_pass(engine: Engine) -> float:
    """The metric step of a full pass, as (b) of benchmarks.run times it."""
    with engine.connect() as conn, conn.begin():
        apply_settings(conn, SETTINGS)
        started = time.perf_counter()
        fetch_sufficient_stats(
            conn, generate.experiment(), generate.AS_OF, assignments="assignments", events="events"
        )
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schema", default="bench_5m")
    parser.add_argument("--lookback-hours", type=float, default=48.0)
    parser.add_argument("--database-url", help="PostgreSQL URL; default: embedded server")
    args = parser.parse_args()
    # the benchmark's engine: search_path set to the schema on every connection
    engine = make_engine(Settings(ABFLOW_SCHEMA=args.schema, home=DATA_DIR), url=args.database_url)
    full = full_pass(engine)
    refresh(engine, daily=False, lookback=args.lookback_hours)
    a_day_passes(engine, args.schema)
    daily = refresh(engine, daily=True, lookback=args.lookback_hours)
    for name, seconds in daily.items():
        print(f"  {name:28s} {seconds:7.2f} s")
    steps = sum(s for n, s in daily.items() if n.startswith("~ "))
    kept = ("units", "unit_segments", "refresh_units", "incremental_read", "seal")
    floor = steps + sum(daily.get(n, 0.0) for n in kept)
    current = daily["(refresh)"] - steps
    print(
        f"full pass {full:.2f} s; daily refresh as it is {current:.2f} s "
        f"({current / full:.2f}x); by differences at least {floor:.2f} s ({floor / full:.2f}x)"
    )
    engine.dispose()


if __name__ == "__main__":
    main()
