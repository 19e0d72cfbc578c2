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
  ctr, latency and sessions read five event names); with the exposure-age cohorts (on unless
  ``--no-exposure-age``; the benchmark's experiment analyses them, as every experiment does by
  default), also the count and sum of the events in each week since exposure (0-6, 7-13, 14-20,
  21+ days: `abflow/cohorts.py`);

and times that build ("kernel full pass": the same aggregates over the whole history, one pass),
then the daily kernel in one transaction, rolled back:

1. units: the assignments of the open days (new or moved units; none in the benchmark's last
   days) and the exposed units per arm and cohort as of the refresh (the final step's counts);
2. read: the open days' events ([sealed_before, as_of], the 48 h lookback rounded to UTC
   midnights, as abflow reads them), joined with `units`, split by exposure and by whether they
   are sealed by this refresh;
3. differences: the touched pairs joined with their stored state, and per arm and event the
   sums of new minus old for the value, its square and its product with the pre-period value
   (the sufficient statistics' updates), and per cohort for its sum, square and membership;
4. seal: the newly sealed day upserted into `state`.

It leaves out, in the design's favour: conversion windows, property filters, duplicate removal,
contamination, the products of a ratio's numerator and denominator (they are two event names
here), segments, writing the per-arm sums, and the final statistics. So the daily kernel is a
lower bound for that design, and `kernel / full pass` says whether target 3 (<= 0.25x abflow's
full pass) is within reach.

    .venv/bin/python -m benchmarks.incremental_kernel --schema bench_20m
    .venv/bin/python -m benchmarks.incremental_kernel --schema bench_20m --no-exposure-age
"""

from __future__ import annotations

import argparse
import time
from datetime import timedelta
from typing import Any

import psycopg
from psycopg import sql

from abflow.cohorts import COHORTS, cohort_values
from abflow.settings import Settings
from abflow.warehouse.engine import make_engine
from abflow.warehouse.incremental import DEFAULT_LATE_LOOKBACK_HOURS, utc_midnight
from benchmarks import generate
from benchmarks.incremental_bound import SETTINGS, full_pass
from benchmarks.run import DATA_DIR, apply_settings

EVENT_NAMES = ("purchase", "click", "impression", "page_load", "session_start")

# The exposure-age cohorts as abflow classifies events: k from its first day since exposure to
# the next cohort's (the last one open-ended), bound as values like abflow's :cohort_k_day.
COHORT_DAYS = [first_day for _, first_day, _ in COHORTS]
# the placeholders of the statements below that hold the cohort columns
COHORT_FRAGMENTS = (
    "state_cohorts", "read_cohorts", "diff_cohorts", "seal_columns", "seal_values", "seal_updates",
)  # fmt: skip


def _in_cohort(k: int, extra: str = "") -> str:
    """The FILTER condition of cohort k's events (read with `e` and `u`), plus `extra`."""
    upper = (
        f" and e.occurred_at < u.t0 + %(cohort_{k + 1}_day)s * interval '1 day'"
        if k + 1 < len(COHORT_DAYS)
        else ""
    )
    return f"e.occurred_at >= u.t0 + %(cohort_{k}_day)s * interval '1 day'{upper}{extra}"


def cohort_sql(cohorts: bool) -> dict[str, sql.Composable]:
    """The cohort columns of each statement (empty without exposure-age cohorts)."""
    if not cohorts:
        return {name: sql.SQL("") for name in COHORT_FRAGMENTS}
    ks = range(len(COHORT_DAYS))
    sealed = " and e.occurred_at < %(seal_to)s"

    def aggregates(suffix: str, extra: str) -> str:
        return "".join(
            f", count(*) filter (where {_in_cohort(k, extra)}) as n_{k}{suffix}"
            f", coalesce(sum(e.value) filter (where {_in_cohort(k, extra)}), 0) as s_{k}{suffix}"
            for k in ks
        )

    texts = {
        "state_cohorts": aggregates("", ""),
        "read_cohorts": aggregates("", "") + aggregates("1", sealed),
        # per cohort: its sum, its square and whether the pair has events in it (in_k)
        "diff_cohorts": "".join(
            f", sum(r.s_{k}) as d_s{k}"
            f", sum(r.s_{k} * (2 * coalesce(st.s_{k}, 0) + r.s_{k})) as d_s{k}_2"
            f", count(*) filter (where r.n_{k} > 0 and coalesce(st.n_{k}, 0) = 0) as d_in{k}"
            for k in ks
        ),
        "seal_columns": "".join(f", n_{k}, s_{k}" for k in ks),
        "seal_values": "".join(f", n_{k}1, s_{k}1" for k in ks),
        "seal_updates": "".join(
            f", n_{k} = st.n_{k} + excluded.n_{k}, s_{k} = st.s_{k} + excluded.s_{k}" for k in ks
        ),
    }
    # constants of this module only: no value or name from outside goes into the text
    return {name: sql.SQL(texts[name]) for name in COHORT_FRAGMENTS}


def exposed_sql() -> sql.Composable:
    """Per arm, the units exposed for cohort k's first day by as_of (k >= 1; all units: k = 0)."""
    return sql.SQL(
        "".join(
            f", count(*) filter (where t0 + %(cohort_{k}_day)s * interval '1 day' <= %(as_of)s)"
            f" as exposed_{k}"
            for k in range(1, len(COHORT_DAYS))
        )
    )


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
        "coalesce(sum(e.value) filter (where e.occurred_at < u.t0), 0) as pre_s"
        "{state_cohorts} "
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
        "new assignments",
        "create temp table kernel_new_units on commit drop as "
        "select unit_id, min(variant_key) as variant_key, min(assigned_at) as t0, "
        "count(distinct variant_key) as arms "
        "from {source}.assignments where experiment_key = %(experiment_key)s "
        "and assigned_at >= %(sealed_before)s and assigned_at <= %(as_of)s group by unit_id",
    ),
    (
        "exposed counts",
        "create temp table kernel_exposed on commit drop as "
        "select variant_key, count(*) as units{exposed_cohorts} "
        "from {kernel}.units group by variant_key",
    ),
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
        "(where e.occurred_at < u.t0 and e.occurred_at < %(seal_to)s), 0) as pre_s1"
        "{read_cohorts} "
        "from {source}.events as e inner join {kernel}.units as u using (unit_id) "
        "where e.occurred_at >= %(sealed_before)s and e.occurred_at <= %(as_of)s "
        "and e.occurred_at >= u.t0 - %(lookback_days)s * interval '1 day' "
        "and e.event_name = any(%(event_names)s) "
        "group by e.unit_id, e.event_name, u.variant_key",
    ),
    (
        "differences",
        # new = stored + read, so new - old of a sum is the read's sum, and of a square
        # r * (2 * stored + r); pairs without state (new pairs) count from zero
        "create temp table kernel_differences on commit drop as "
        "select r.variant_key, r.event_name, "
        "sum(r.s) as d_y, sum(r.s * (2 * coalesce(st.s, 0) + r.s)) as d_y2, "
        "sum(r.n) as d_n, sum(r.n * (2 * coalesce(st.n, 0) + r.n)) as d_n2, "
        "sum(r.pre_s) as d_x, "
        "sum((coalesce(st.pre_s, 0) + r.pre_s) * (coalesce(st.s, 0) + r.s) "
        "- coalesce(st.pre_s, 0) * coalesce(st.s, 0)) as d_xy"
        "{diff_cohorts} "
        "from kernel_read as r left join {kernel}.state as st using (unit_id, event_name) "
        "group by r.variant_key, r.event_name",
    ),
    (
        "seal",
        "insert into {kernel}.state as st "
        "(unit_id, event_name, variant_key, n, s, m, pre_n, pre_s{seal_columns}) "
        "select unit_id, event_name, variant_key, n1, s1, m1, pre_n1, pre_s1{seal_values} "
        "from kernel_read where n1 + pre_n1 > 0 "
        "on conflict (unit_id, event_name) do update set n = st.n + excluded.n, "
        "s = st.s + excluded.s, m = greatest(st.m, excluded.m), "
        "pre_n = st.pre_n + excluded.pre_n, pre_s = st.pre_s + excluded.pre_s{seal_updates}",
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
    parser.add_argument(
        "--no-exposure-age",
        dest="exposure_age",
        action="store_false",
        help="state without the exposure-age cohorts (the seventh session's kernel)",
    )
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
        **cohort_values(),
    }
    names = {
        "kernel": sql.Identifier(f"{args.schema}_kernel"),
        "source": sql.Identifier(args.schema),
        **cohort_sql(args.exposure_age),
        "exposed_cohorts": exposed_sql(),
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
