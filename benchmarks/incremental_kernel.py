"""What a daily refresh over narrow per-unit state costs at the least: the kernel under target 3.

`benchmarks/incremental_bound.py` times the differences design over the partials abflow stores
today (55 columns per unit and metric) and finds its floor at ~0.8x of a full pass. This script
asks the question the other way round: with the narrowest exact state a by-differences refresh
can keep, how long do its unavoidable steps take on the benchmark's data? It builds, in a scratch
schema `<schema>_kernel` (not timed as part of the daily refresh):

- `units`: each analysed unit's arm and first exposure (units exposed to one arm only);
- `state`: per (unit, event name) of the experiment's events before ``sealed_before`` — the count,
  sum and max of the events on or after the unit's exposure, and the count and sum of those in
  the CUPED lookback before it (what the benchmark's five metrics need: conversion, revenue,
  ctr, latency and sessions read five event names);

and times that build ("kernel full pass": the same aggregates over the whole history, one pass),
then the daily kernel in one transaction, rolled back:

1. read: the open days' events ([sealed_before, as_of], the 48 h lookback rounded to UTC
   midnights, as abflow reads them), joined with `units`, split by exposure and by whether they
   are sealed by this refresh;
2. differences: the touched pairs joined with their stored state, and per arm and event the
   sums of new minus old for the value, its square and its product with the pre-period value
   (the sufficient statistics' updates);
3. seal: the newly sealed day upserted into `state`.

It leaves out, in the design's favour: the units stage (new and moved exposures), conversion
windows, property filters, duplicate removal, exposure-age cohorts, segments, writing the
per-arm sums, and the final statistics. So the daily kernel is a lower bound for that design,
and `kernel / full pass` says whether target 3 (<= 0.25x abflow's full pass) is within reach.

    .venv/bin/python -m benchmarks.incremental_kernel --schema bench_20m
"""

from __future__ import annotations

import argparse
import time
from datetime import timedelta
from typing import Any

import psycopg
from psycopg import sql

from abflow.settings import Settings
from abflow.warehouse.engine import make_engine
from abflow.warehouse.incremental import DEFAULT_LATE_LOOKBACK_HOURS, utc_midnight
from benchmarks import generate
from benchmarks.incremental_bound import SETTINGS, full_pass
from benchmarks.run import DATA_DIR, apply_settings

EVENT_NAMES = ("purchase", "click", "impression", "page_load", "session_start")

BUILD: list[tuple[str, str]] = [
    ("drop", "drop schema if exists {kernel} cascade"),
    ("schema", "create schema {kernel}"),
    (
        "units",
        "create table {kernel}.units as "
        "select unit_id, min(variant_key) as variant_key, min(assigned_at) as t0 "
        "from {source}.assignments where experiment_key = %(experiment_key)s "
        "group by unit_id having count(distinct variant_key) = 1",
    ),
    ("units key", "alter table {kernel}.units add primary key (unit_id)"),
    (
        "state",
        "create table {kernel}.state as "
        "select e.unit_id, e.event_name, u.variant_key, "
        "count(*) filter (where e.occurred_at >= u.t0) as n, "
        "coalesce(sum(e.value) filter (where e.occurred_at >= u.t0), 0) as s, "
        "max(e.value) filter (where e.occurred_at >= u.t0) as m, "
        "count(*) filter (where e.occurred_at < u.t0) as pre_n, "
        "coalesce(sum(e.value) filter (where e.occurred_at < u.t0), 0) as pre_s "
        "from {source}.events as e inner join {kernel}.units as u using (unit_id) "
        "where e.occurred_at < %(sealed_before)s "
        "and e.occurred_at >= u.t0 - %(lookback_days)s * interval '1 day' "
        "and e.event_name = any(%(event_names)s) "
        "group by e.unit_id, e.event_name, u.variant_key",
    ),
    ("state key", "alter table {kernel}.state add primary key (unit_id, event_name)"),
    ("analyze", "analyze {kernel}.units, {kernel}.state"),
]

DAILY: list[tuple[str, str]] = [
    (
        "read open days",
        "create temp table kernel_read on commit drop as "
        "select e.unit_id, e.event_name, u.variant_key, "
        "count(*) filter (where e.occurred_at >= u.t0) as n, "
        "coalesce(sum(e.value) filter (where e.occurred_at >= u.t0), 0) as s, "
        "max(e.value) filter (where e.occurred_at >= u.t0) as m, "
        "count(*) filter (where e.occurred_at < u.t0) as pre_n, "
        "coalesce(sum(e.value) filter (where e.occurred_at < u.t0), 0) as pre_s, "
        "count(*) filter (where e.occurred_at >= u.t0 and e.occurred_at < %(seal_to)s) as n1, "
        "coalesce(sum(e.value) filter "
        "(where e.occurred_at >= u.t0 and e.occurred_at < %(seal_to)s), 0) as s1, "
        "max(e.value) filter (where e.occurred_at >= u.t0 and e.occurred_at < %(seal_to)s) as m1, "
        "count(*) filter (where e.occurred_at < u.t0 and e.occurred_at < %(seal_to)s) as pre_n1, "
        "coalesce(sum(e.value) filter "
        "(where e.occurred_at < u.t0 and e.occurred_at < %(seal_to)s), 0) as pre_s1 "
        "from {source}.events as e inner join {kernel}.units as u using (unit_id) "
        "where e.occurred_at >= %(sealed_before)s and e.occurred_at <= %(as_of)s "
        "and e.occurred_at >= u.t0 - %(lookback_days)s * interval '1 day' "
        "and e.event_name = any(%(event_names)s) "
        "group by e.unit_id, e.event_name, u.variant_key",
    ),
    (
        "differences",
        "create temp table kernel_differences on commit drop as "
        "with pairs as ("
        "  select r.variant_key, r.event_name, "
        "  coalesce(st.s, 0) as old_y, coalesce(st.s, 0) + r.s as new_y, "
        "  coalesce(st.n, 0) as old_n, coalesce(st.n, 0) + r.n as new_n, "
        "  coalesce(st.pre_s, 0) as old_x, coalesce(st.pre_s, 0) + r.pre_s as new_x "
        "  from kernel_read as r left join {kernel}.state as st using (unit_id, event_name)"
        ") "
        "select variant_key, event_name, "
        "sum(new_y - old_y) as d_y, sum(new_y * new_y - old_y * old_y) as d_y2, "
        "sum(new_n - old_n) as d_n, sum(new_n * new_n - old_n * old_n) as d_n2, "
        "sum(new_x - old_x) as d_x, sum(new_x * new_y - old_x * old_y) as d_xy "
        "from pairs group by variant_key, event_name",
    ),
    (
        "seal",
        "insert into {kernel}.state as st "
        "(unit_id, event_name, variant_key, n, s, m, pre_n, pre_s) "
        "select unit_id, event_name, variant_key, n1, s1, m1, pre_n1, pre_s1 from kernel_read "
        "where n1 + pre_n1 > 0 "
        "on conflict (unit_id, event_name) do update set n = st.n + excluded.n, "
        "s = st.s + excluded.s, m = greatest(st.m, excluded.m), "
        "pre_n = st.pre_n + excluded.pre_n, pre_s = st.pre_s + excluded.pre_s",
    ),
]


def _run(
    cur: psycopg.Cursor[Any],
    steps: list[tuple[str, str]],
    names: dict[str, sql.Composable],
    params: dict[str, Any],
) -> dict[str, float]:
    timings: dict[str, float] = {}
    for name, template in steps:
        started = time.perf_counter()
        cur.execute(sql.SQL(template).format(**names), params, prepare=False)
        timings[name] = time.perf_counter() - started
        print(f"  {name:24s} {timings[name]:7.2f} s  ({cur.rowcount:,} rows)")
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schema", default="bench_5m")
    parser.add_argument("--lookback-hours", type=float, default=DEFAULT_LATE_LOOKBACK_HOURS)
    parser.add_argument("--database-url", help="PostgreSQL URL; default: embedded server")
    args = parser.parse_args()
    engine = make_engine(Settings(ABFLOW_SCHEMA=args.schema, home=DATA_DIR), url=args.database_url)
    # The previous daily refresh (as_of one day earlier) sealed what was older than its lookback;
    # this one reads from there and seals one more day.
    as_of = generate.AS_OF
    sealed_before = utc_midnight(as_of - timedelta(days=1, hours=args.lookback_hours))
    params = {
        "experiment_key": generate.EXPERIMENT_KEY,
        "event_names": list(EVENT_NAMES),
        "lookback_days": generate.LOOKBACK_DAYS,
        "sealed_before": sealed_before,
        "seal_to": utc_midnight(as_of - timedelta(hours=args.lookback_hours)),
        "as_of": as_of,
    }
    names = {
        "kernel": sql.Identifier(f"{args.schema}_kernel"),
        "source": sql.Identifier(args.schema),
    }
    full = full_pass(engine)
    print(f"abflow full pass {full:.2f} s; kernel state before {sealed_before:%Y-%m-%d}:")
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert isinstance(raw, psycopg.Connection)
        with conn.begin():
            apply_settings(conn, SETTINGS)
            with raw.cursor() as cur:
                built = _run(cur, BUILD, names, params)
        print("daily kernel (rolled back):")
        tx = conn.begin()
        apply_settings(conn, SETTINGS)
        with raw.cursor() as cur:
            daily = _run(cur, DAILY, names, params)
        tx.rollback()
        with conn.begin(), raw.cursor() as cur:  # the scratch state is 0.6 GB at 20M events
            cur.execute(sql.SQL(BUILD[0][1]).format(**names))
    kernel_full = built["units"] + built["state"]
    kernel = sum(daily.values())
    print(
        f"daily kernel {kernel:.2f} s = {kernel / full:.2f}x abflow's full pass ({full:.2f} s), "
        f"{kernel / kernel_full:.2f}x the kernel's own full pass ({kernel_full:.2f} s)"
    )
    engine.dispose()


if __name__ == "__main__":
    main()
