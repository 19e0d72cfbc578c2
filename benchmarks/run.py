"""Benchmark runner: reference query vs abflow's metric step vs `abflow run`, per data size."""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import psutil
import psycopg
import sqlglot
from psycopg import sql
from rich.console import Console
from rich.table import Table
from sqlalchemy import Connection, Engine

from abflow.definitions import Experiment
from abflow.results import SufficientStats
from abflow.settings import Settings
from abflow.warehouse import plan
from abflow.warehouse.dialects import (
    CANONICAL,
    Statement,
    canonical,
    render_plan,
    with_ctes,
)
from abflow.warehouse.engine import embedded_url, make_engine
from abflow.warehouse.engines import PostgresExecutor, execute_plan
from abflow.warehouse.extract import (
    build_analysis_tables,
    default_sources,
    fetch_sufficient_stats,
    relation,
)
from abflow.warehouse.incremental import fetch_sufficient_stats_incremental
from benchmarks import generate

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT / "benchmarks" / ".data"
RESULTS_DIR = ROOT / "benchmarks" / "results"
ABFLOW_BIN = Path(sys.executable).with_name("abflow")
REL_TOL = 1e-9
# The tree's RSS by polling (every 20 ms took ~8-15% of a core beside the measured run); the
# run's own peak is exact, from wait4's rusage.
RSS_POLL_SECONDS = 0.25
E2E_TARGET_SIZES = (1_000_000, 5_000_000)  # where issue 15 sets the end-to-end budget
STAT_FIELDS = (
    "exposed_units", "units", "sum", "sum_squares", "denominator_sum", "denominator_sum_squares",
    "sum_products", "covariate_sum", "covariate_sum_squares", "covariate_sum_products",
    # ratio CUPED (gbstats ratio_ra): the pre-exposure denominator d and its products
    "denominator_covariate_sum", "denominator_covariate_sum_squares",
    "denominator_covariate_sum_products", "covariate_cross_sum_products",
    "numerator_denominator_covariate_sum_products", "covariate_denominator_sum_products",
    "contaminated_units",
)
_SETTING = re.compile(r"^([a-z_]+)=([A-Za-z0-9_.]+)$")
console = Console(width=None if Console().is_terminal else 160)

# (a) The hand-written reference: first exposure per unit, joined to events once, every metric
# (and its CUPED pre-period value) in one GROUP BY per unit, then per variant. Written for the
# benchmark experiment only (event names and the 168 h conversion window are literals).
REFERENCE_SQL = """
with

exposed as (
    -- the exclusion is a column, not a HAVING: the planner estimates a HAVING on aggregates at a
    -- few dozen rows and then picks a nested loop of index probes into events (10x slower)
    select
        unit_id,
        min(assigned_at) as t0,
        min(assigned_at) - %(lookback_days)s * interval '1 day' as pre,
        min(variant_key) as variant_key,
        min(variant_key) = max(variant_key) and min(variant_key) = any(%(variants)s) as analysed
    from {assignments}
    where experiment_key = %(experiment_key)s
      and assigned_at >= %(start_at)s
      and assigned_at <= %(as_of)s
    group by unit_id
),

exposed_events as (
    -- every unit joined to its events once; exact duplicate rows (same unit, event, value and
    -- time) count once, as in abflow. The text keys sort in byte order (collation "C"), as
    -- abflow's pass does: with the database's collation (C.UTF-8 here) every comparison calls
    -- strcoll, and this sort took 1.5 s longer at 5M events
    select distinct
        x.unit_id collate "C" as unit_id, x.variant_key collate "C" as variant_key,
        x.analysed, x.t0, x.pre,
        e.event_name collate "C" as event_name, e.value, e.occurred_at
    from exposed as x
    left join {events} as e
        on e.unit_id = x.unit_id
        and e.event_name in ('purchase', 'click', 'impression', 'page_load', 'session_start')
        and e.occurred_at >= least(x.pre, %(start_at)s)
        and e.occurred_at <= %(as_of)s
),

per_unit as (
    -- post: after exposure; pre: the CUPED lookback before it; early: after the start, before
    -- exposure (contamination)
    select
        e.variant_key,
        e.analysed,
        case when count(*) filter (where e.event_name = 'purchase' and e.occurred_at >= e.t0
                                     and e.occurred_at < e.t0 + interval '168 hours') > 0
            then 1.0 else 0.0 end as conv_y,
        case when count(*) filter (where e.event_name = 'purchase' and e.occurred_at < e.t0
                                     and e.occurred_at >= e.pre) > 0
            then 1.0 else 0.0 end as conv_c,
        coalesce(sum(e.value) filter (where e.event_name = 'purchase' and e.occurred_at >= e.t0),
                 0.0) as rev_y,
        coalesce(sum(e.value) filter (where e.event_name = 'purchase' and e.occurred_at < e.t0
                                        and e.occurred_at >= e.pre), 0.0) as rev_c,
        count(*) filter (where e.event_name = 'click' and e.occurred_at >= e.t0)::float8
            as clicks,
        count(*) filter (where e.event_name = 'impression' and e.occurred_at >= e.t0)::float8
            as impressions,
        -- ratio CUPED: the ratio's numerator and denominator in the lookback before exposure
        count(*) filter (where e.event_name = 'click' and e.occurred_at < e.t0
                           and e.occurred_at >= e.pre)::float8 as clicks_c,
        count(*) filter (where e.event_name = 'impression' and e.occurred_at < e.t0
                           and e.occurred_at >= e.pre)::float8 as impressions_c,
        avg(e.value) filter (where e.event_name = 'page_load' and e.occurred_at >= e.t0)
            as lat_y,
        coalesce(avg(e.value) filter (where e.event_name = 'page_load' and e.occurred_at < e.t0
                                        and e.occurred_at >= e.pre), 0.0) as lat_c,
        count(*) filter (where e.event_name = 'session_start' and e.occurred_at >= e.t0)::float8
            as sess_y,
        count(*) filter (where e.event_name = 'session_start' and e.occurred_at < e.t0
                           and e.occurred_at >= e.pre)::float8 as sess_c,
        bool_or(e.event_name = 'purchase' and e.occurred_at < e.t0
                and e.occurred_at >= %(start_at)s) as purchase_early,
        bool_or(e.event_name = 'click' and e.occurred_at < e.t0
                and e.occurred_at >= %(start_at)s) as click_early,
        bool_or(e.event_name = 'page_load' and e.occurred_at < e.t0
                and e.occurred_at >= %(start_at)s) as page_load_early,
        bool_or(e.event_name = 'session_start' and e.occurred_at < e.t0
                and e.occurred_at >= %(start_at)s) as session_start_early
    from exposed_events as e
    group by e.unit_id, e.variant_key, e.analysed
)

select
    analysed,
    variant_key,
    count(*) as n,
    sum(conv_y) as conversion__sum, sum(conv_y * conv_y) as conversion__sum_squares,
    sum(conv_c) as conversion__covariate_sum,
    sum(conv_c * conv_c) as conversion__covariate_sum_squares,
    sum(conv_c * conv_y) as conversion__covariate_sum_products,
    sum(rev_y) as revenue__sum, sum(rev_y * rev_y) as revenue__sum_squares,
    sum(rev_c) as revenue__covariate_sum, sum(rev_c * rev_c) as revenue__covariate_sum_squares,
    sum(rev_c * rev_y) as revenue__covariate_sum_products,
    sum(clicks) as ctr__sum, sum(clicks * clicks) as ctr__sum_squares,
    sum(impressions) as ctr__denominator_sum,
    sum(impressions * impressions) as ctr__denominator_sum_squares,
    sum(impressions * clicks) as ctr__sum_products,
    sum(clicks_c) as ctr__covariate_sum, sum(clicks_c * clicks_c) as ctr__covariate_sum_squares,
    sum(clicks_c * clicks) as ctr__covariate_sum_products,
    sum(impressions_c) as ctr__denominator_covariate_sum,
    sum(impressions_c * impressions_c) as ctr__denominator_covariate_sum_squares,
    sum(impressions_c * impressions) as ctr__denominator_covariate_sum_products,
    sum(clicks_c * impressions_c) as ctr__covariate_cross_sum_products,
    sum(clicks * impressions_c) as ctr__numerator_denominator_covariate_sum_products,
    sum(clicks_c * impressions) as ctr__covariate_denominator_sum_products,
    count(lat_y) as latency_ms__units,
    sum(lat_y) as latency_ms__sum, sum(lat_y * lat_y) as latency_ms__sum_squares,
    sum(lat_c) filter (where lat_y is not null) as latency_ms__covariate_sum,
    sum(lat_c * lat_c) filter (where lat_y is not null) as latency_ms__covariate_sum_squares,
    sum(lat_c * lat_y) as latency_ms__covariate_sum_products,
    sum(sess_y) as sessions__sum, sum(sess_y * sess_y) as sessions__sum_squares,
    sum(sess_c) as sessions__covariate_sum, sum(sess_c * sess_c) as sessions__covariate_sum_squares,
    sum(sess_c * sess_y) as sessions__covariate_sum_products,
    count(*) filter (where purchase_early) as conversion__contaminated_units,
    count(*) filter (where purchase_early) as revenue__contaminated_units,
    count(*) filter (where click_early) as ctr__contaminated_units,
    count(*) filter (where page_load_early) as latency_ms__contaminated_units,
    count(*) filter (where session_start_early) as sessions__contaminated_units
from per_unit
group by analysed, variant_key  -- not WHERE analysed: it would be pushed down into a HAVING
order by analysed, variant_key
"""

StatKey = tuple[str, str]  # (metric_key, variant_key)
StatValues = dict[str, float | None]


@dataclass
class Timing:
    """Wall times (seconds) of the measured repeats; the warm-up is not included."""

    runs: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        """Median of the measured runs."""
        return statistics.median(self.runs)


@dataclass
class EndToEnd:
    """One `abflow run` subprocess: wall time, exit code and peak memory."""

    seconds: float
    exit_code: int
    peak_rss_mb: float
    peak_tree_rss_mb: float
    ru_maxrss_children_mb: float
    command: str
    log: str
    # user + system CPU of the process and its descendants (the Prefect server), not of
    # PostgreSQL: on a shared machine this moves far less with the load than the wall time
    cpu_seconds: float = 0.0


@dataclass
class Incremental:
    """Incremental refresh: the first (full) refresh a day earlier, then the daily one at as_of."""

    initial_seconds: float
    initial_mode: str
    daily_seconds: float
    daily_mode: str
    daily_units_recomputed: int
    daily_events_from: str
    match_full: bool


@dataclass
class SizeResult:
    """Everything measured for one data size."""

    events: int
    schema: str
    units: int
    assignments_rows: int
    data_reused: bool
    generate_seconds: float
    reference: Timing
    abflow: Timing
    proposed: Timing | None
    match_abflow: bool
    match_proposed: bool | None
    mismatches: list[str]
    e2e: EndToEnd | None
    incremental: Incremental | None
    load_average: list[float]  # 1-minute load average before and after this size (2 cores)
    # every e2e run (--e2e-repeat); `e2e` is the median one. --baseline-abflow: the same
    # command with another abflow installation, interleaved with these runs
    e2e_runs: list[EndToEnd] = field(default_factory=list)
    e2e_baseline_runs: list[EndToEnd] = field(default_factory=list)
    # with --incremental: `abflow run` in incremental mode, "first" (as of the day before,
    # --full-refresh) and "daily" (as of as_of, continuing from the first)
    e2e_incremental: dict[str, EndToEnd] = field(default_factory=dict)

    @property
    def ratio_abflow(self) -> float:
        """(b) / (a): abflow's metric step over the reference query."""
        return self.abflow.median / self.reference.median

    @property
    def ratio_proposed(self) -> float | None:
        """(b') / (a): the proposed metric_stats.sql over the reference query."""
        return self.proposed.median / self.reference.median if self.proposed else None

    @property
    def e2e_budget(self) -> float:
        """End-to-end target (issue 15): 1.5 x reference + 4 s below 5M events, + 6 s from 5M."""
        return 1.5 * self.reference.median + (6.0 if self.events >= 5_000_000 else 4.0)


# --- session settings ---------------------------------------------------------------------------


def parse_settings(items: Sequence[str]) -> dict[str, str]:
    """`name=value` pairs (e.g. work_mem=64MB) applied with SET LOCAL to (a), (b), (b')."""
    out: dict[str, str] = {}
    for item in items:
        m = _SETTING.match(item)
        if not m:
            raise SystemExit(f"--set {item!r}: expected name=value, e.g. work_mem=64MB")
        out[m.group(1)] = m.group(2)
    return out


def apply_settings(conn: Connection, settings: dict[str, str]) -> None:
    """SET LOCAL each session parameter inside the current transaction."""
    with generate.raw_connection(conn).cursor() as cur:
        for name, value in settings.items():
            cur.execute(sql.SQL("set local {} = {}").format(sql.Identifier(name),
                                                             sql.Literal(value)))


def pgoptions(settings: dict[str, str]) -> str:
    """The same parameters for the abflow subprocess, through libpq's PGOPTIONS."""
    return " ".join(f"-c {k}={v}" for k, v in settings.items())


# --- the measured queries -----------------------------------------------------------------------


def query_params(experiment: Experiment) -> dict[str, Any]:
    """Bound parameters of the reference query (and of the proposed metric query)."""
    lookback = experiment.analysis.cuped.lookback_days if experiment.analysis.cuped else 0
    return {
        "experiment_key": experiment.key,
        "start_at": experiment.start_at,
        "as_of": generate.AS_OF,
        "variants": [v.key for v in experiment.variants],
        "lookback_days": lookback,
    }


def _cursor_execute(conn: Connection, query: sql.SQL | sql.Composed,
                    params: dict[str, Any]) -> Any:
    cur = generate.raw_connection(conn).cursor()
    cur.execute(query, params)
    return cur


def reference_query() -> sql.Composed:
    """The reference query with the source tables composed in."""
    return sql.SQL(REFERENCE_SQL).format(assignments=relation("assignments"),
                                         events=relation("events"))


def run_reference(conn: Connection, experiment: Experiment) -> dict[StatKey, StatValues]:
    """(a) Run the reference query; reshape its wide rows to (metric, variant) -> statistics."""
    cur = _cursor_execute(conn, reference_query(), query_params(experiment))
    cols = [d.name for d in cur.description or ()]
    rows = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
    cur.close()
    out: dict[StatKey, StatValues] = {}
    for row in rows:
        if not row.pop("analysed"):  # units in several variants or unknown ones: excluded
            continue
        n = float(row["n"])
        for metric in experiment.metrics:
            values: StatValues = {f: None for f in STAT_FIELDS}
            values["exposed_units"] = n
            values["units"] = n
            for col, value in row.items():
                prefix, _, stat = col.partition("__")
                if prefix == metric.key and stat:
                    values[stat] = None if value is None else float(value)
            out[(metric.key, row["variant_key"])] = values
    return out


def from_stats(stats: list[SufficientStats]) -> dict[StatKey, StatValues]:
    """abflow's SufficientStats (segment 'all') as (metric, variant) -> statistics."""
    out: dict[StatKey, StatValues] = {}
    for s in stats:
        if s.segment != "all":
            continue
        row = asdict(s)
        out[(s.metric_key, s.variant_key)] = {
            f: None if row[f] is None else float(row[f]) for f in STAT_FIELDS
        }
    return out


def run_abflow(conn: Connection, experiment: Experiment) -> dict[StatKey, StatValues]:
    """(b) abflow's metric step, exactly as the flow calls it."""
    stats = fetch_sufficient_stats(conn, experiment, generate.AS_OF,
                                   assignments="assignments", events="events")
    return from_stats(stats)


def run_proposed(conn: Connection, experiment: Experiment,
                 path: Path) -> dict[StatKey, StatValues]:
    """(b') abflow's stages, then the proposed per-unit step (a candidate metric_stats.sql)."""
    build_analysis_tables(conn, experiment, generate.AS_OF, assignments="assignments")
    rows = execute_plan(PostgresExecutor(conn), [proposed_statement(experiment, path)],
                        default_sources("assignments", "events"))["metric_stats"]
    return from_stats([_stats_row(r) for r in rows])


def _stats_row(row: dict[str, Any]) -> SufficientStats:
    """One metric_stats.sql row as SufficientStats (the same conversion extract.py does)."""
    labels = ("metric_key", "variant_key", "segment")
    counts = ("exposed_units", "units")
    values: dict[str, Any] = {
        k: v if k in labels or v is None else int(v) if k in counts else float(v)
        for k, v in row.items()
    }
    return SufficientStats(**values)


def proposed_statement(experiment: Experiment, path: Path) -> Statement:
    """A candidate metric_stats.sql (canonical SQL, same columns) fed into the final step."""
    candidate = sqlglot.parse_one(path.read_text(encoding="utf-8"), read=CANONICAL)
    assert isinstance(candidate, sqlglot.exp.Query)
    final = with_ctes(canonical("queries/metric_final.sql"), [("abflow_unit_values", candidate)])
    values = plan.analysis_values(experiment, generate.AS_OF)
    return Statement("metric_stats", final).bind(values)


def _pg_text(experiment: Experiment, statement: Statement) -> sql.Composed:
    """A rendered PostgreSQL statement with its values inlined as literals (for EXPLAIN)."""
    rendered = render_plan([statement], "postgres", default_sources("assignments", "events"))[0]
    text = re.sub(r"%\((\w+)\)s", lambda m: "{" + m.group(1) + "}", rendered.sql)
    return sql.SQL(text).format(**{k: sql.Literal(v) for k, v in rendered.params.items()})


def compare(expected: dict[StatKey, StatValues], got: dict[StatKey, StatValues]) -> list[str]:
    """Differences beyond REL_TOL (relative) between two result sets, as readable lines."""
    problems: list[str] = []
    for key in sorted(set(expected) | set(got)):
        if key not in expected or key not in got:
            problems.append(f"{key}: missing on one side")
            continue
        for f in STAT_FIELDS:
            a, b = expected[key][f], got[key][f]
            if a is None or b is None:
                if a is not b:
                    problems.append(f"{key} {f}: {a} vs {b}")
            elif not math.isclose(a, b, rel_tol=REL_TOL, abs_tol=1e-12):
                problems.append(f"{key} {f}: {a!r} vs {b!r}")
    return problems


Candidate = Callable[[Connection], dict[StatKey, StatValues]]


def timed(engine: Engine, settings: dict[str, str],
          fn: Candidate) -> tuple[float, dict[StatKey, StatValues]]:
    """Wall time of one transaction (SET LOCAL, the query, commit) and its result."""
    started = time.perf_counter()
    with engine.begin() as conn:
        apply_settings(conn, settings)
        result = fn(conn)
    return time.perf_counter() - started, result


def explain(engine: Engine, experiment: Experiment, settings: dict[str, str], path: Path,
            proposed: Path | None) -> None:
    """EXPLAIN (ANALYZE, BUFFERS) of (a), abflow's metric_stats.sql and (b') into a text file."""
    params = query_params(experiment)
    prefix = sql.SQL("explain (analyze, buffers, settings) ")
    sections: list[str] = []
    values = plan.analysis_values(experiment, generate.AS_OF)
    with engine.begin() as conn:
        apply_settings(conn, settings)
        build_analysis_tables(conn, experiment, generate.AS_OF, assignments="assignments")
        queries = {
            "(a) reference": reference_query(),
            "(b) sql/queries/metric_stats.sql": _pg_text(
                experiment, plan.metric_stats_statement(values)),
        }
        if proposed:
            queries[f"(b') proposed {proposed}"] = _pg_text(
                experiment, proposed_statement(experiment, proposed))
        for title, query in queries.items():
            cur = _cursor_execute(conn, prefix + query, params)
            sections.append(f"=== {title}\n" + "\n".join(str(r[0]) for r in cur.fetchall()))
            cur.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join(sections) + "\n", encoding="utf-8")


# --- end to end ---------------------------------------------------------------------------------


def _tree_rss(proc: psutil.Process) -> tuple[int, int]:
    """(RSS of proc, RSS of proc plus all its descendants) in bytes; 0 for vanished processes."""
    try:
        own = proc.memory_info().rss
        children = proc.children(recursive=True)
    except psutil.Error:
        return 0, 0
    total = own
    for child in children:
        try:
            total += child.memory_info().rss
        except psutil.Error:
            continue
    return own, total


def prefect_env(mode: str) -> dict[str, str]:
    """The environment of the `abflow` subprocesses: their Prefect home and server mode."""
    env = {**os.environ, "PREFECT_HOME": str(DATA_DIR / "prefect")}
    env.pop("PREFECT_API_URL", None)
    if mode == "temporary":
        env["ABFLOW_PREFECT_SERVER_IDLE_MINUTES"] = "0"
    else:
        env.setdefault("ABFLOW_PREFECT_SERVER_IDLE_MINUTES", "60")
    return env


def kept_server(action: str) -> str:
    """`abflow server start|stop` in the benchmark's Prefect home; its one-line answer."""
    done = subprocess.run([str(ABFLOW_BIN), "server", action], env=prefect_env("kept"),
                          capture_output=True, text=True, check=False, cwd=ROOT)
    return (done.stdout or done.stderr).strip()


def run_end_to_end(url: str, schema: str, settings: dict[str, str], log_path: Path,
                   abflow_bin: Path = ABFLOW_BIN, prefect_server: str = "kept",
                   *, as_of: datetime = generate.AS_OF,
                   incremental: str | None = None) -> EndToEnd:
    """(c)+(d) `abflow run` as a subprocess; its peak RSS from wait4, its tree's by polling.

    `incremental`: None, a full pass (ABFLOW_INCREMENTAL=false); "full": an incremental-mode
    run that recomputes everything (`--full-refresh`: the first refresh); "daily": an
    incremental-mode run continuing from the stored state.
    """
    cmd = [str(abflow_bin), "run", "--experiment", generate.EXPERIMENT_KEY,
           "--as-of", as_of.strftime("%Y-%m-%dT%H:%M:%SZ")]
    if incremental == "full":
        cmd.append("--full-refresh")
    env = {**prefect_env(prefect_server), "ABFLOW_DATABASE_URL": url, "ABFLOW_SCHEMA": schema,
           "ABFLOW_INCREMENTAL": "false" if incremental is None else "true"}
    if settings:
        env["PGOPTIONS"] = (env.get("PGOPTIONS", "") + " " + pgoptions(settings)).strip()
    peak = [0, 0]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with log_path.open("w", encoding="utf-8") as log:
        started = time.perf_counter()
        child = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        proc = psutil.Process(child.pid)
        done = threading.Event()

        def poll() -> None:
            while not done.is_set():
                own, total = _tree_rss(proc)
                peak[0], peak[1] = max(peak[0], own), max(peak[1], total)
                done.wait(RSS_POLL_SECONDS)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        # wait4: the exit status and this child's own rusage (ru_maxrss: its exact peak RSS)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
        child.returncode = code = os.waitstatus_to_exitcode(status)
        done.set()
        poller.join()
    # Linux: ru_maxrss in KiB (here this run's own; below, the largest of any waited-for
    # descendant so far)
    peak[0] = max(peak[0], usage.ru_maxrss * 1024)
    peak[1] = max(peak[1], peak[0])
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    children_max = after.ru_maxrss / 1024
    cpu = (after.ru_utime - cpu_before.ru_utime) + (after.ru_stime - cpu_before.ru_stime)
    return EndToEnd(seconds, code, peak[0] / 2**20, peak[1] / 2**20, children_max,
                    " ".join(cmd), str(log_path.relative_to(ROOT)), cpu)


# --- incremental refresh -----------------------------------------------------------------------


# The state tables a refresh rewrites: a full refresh deletes and reinserts every row.
STATE_TABLES = ("unit_metric_partials", "unit_exposures_seen")


def a_day_passes(engine: Engine, schema: str) -> None:
    """What PostgreSQL does to the state tables in the day between two scheduled refreshes.

    Autovacuum (on by default) vacuums a table once more than 50 + 20% of its rows are dead, and
    the benchmark's full refresh of the table's only experiment leaves half of them dead: within
    minutes it clears them and sets the pages' visibility. Timed right after the first refresh,
    without that, the daily refresh reads every partial twice, live and dead. (A table holding
    many experiments' partials gets there only after several full refreshes.)
    """
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        raw = cast(psycopg.Connection, conn.connection.dbapi_connection)
        with raw.cursor() as cur:
            for table in STATE_TABLES:
                cur.execute(sql.SQL("vacuum (analyze) {}").format(sql.Identifier(schema, table)))


def run_incremental(engine: Engine, experiment: Experiment, settings: dict[str, str],
                    full: dict[StatKey, StatValues], schema: str, *,
                    vacuum: bool = True) -> Incremental:
    """Refresh as of the day before as_of (from scratch), then as of as_of (the daily run).

    Each refresh is one transaction, as in the flow; the daily result must equal (b)'s.
    `vacuum`: between the two, vacuum the state tables as autovacuum would in that day.
    """
    refreshes = []
    for as_of, full_refresh in ((generate.AS_OF - timedelta(days=1), True),
                                (generate.AS_OF, False)):
        if not full_refresh and vacuum:
            a_day_passes(engine, schema)
        started = time.perf_counter()
        with engine.begin() as conn:
            apply_settings(conn, settings)
            stats, info = fetch_sufficient_stats_incremental(
                conn, experiment, as_of, assignments="assignments", events="events",
                full_refresh=full_refresh)
        refreshes.append((time.perf_counter() - started, stats, info))
    (t0, _, first), (t1, daily, info) = refreshes
    return Incremental(
        initial_seconds=t0, initial_mode=first.mode, daily_seconds=t1, daily_mode=info.mode,
        daily_units_recomputed=info.units_recomputed,
        daily_events_from=info.events_from.isoformat(),
        match_full=not compare(full, from_stats(daily)),
    )


# --- one size -----------------------------------------------------------------------------------


def measure_size(url: str, events: int, repeat: int, args: argparse.Namespace,
                 settings: dict[str, str], stamp: str) -> SizeResult:
    """Generate (or reuse) one size, then time (a), (b), (b') and run (c)/(d)."""
    schema = generate.schema_for(events, args.events_per_unit)
    engine = make_engine(Settings(ABFLOW_SCHEMA=schema, home=DATA_DIR), url=url)
    try:
        load_before = os.getloadavg()[0]
        console.print(f"[bold]{events:,} events[/bold] in schema {schema}: generating or reusing …")
        data = generate.ensure_data(engine, schema, events, force=args.regenerate,
                                    events_per_unit=args.events_per_unit)
        console.print(f"  data {'reused' if data.reused else f'generated in {data.seconds:.1f} s'}"
                      f": {data.units:,} units, {data.assignments_rows:,} assignment rows")
        experiment = generate.experiment()
        candidates: dict[str, Candidate] = {
            "reference": lambda c: run_reference(c, experiment),
            "abflow": lambda c: run_abflow(c, experiment),
        }
        if args.proposed:
            candidates["proposed"] = lambda c: run_proposed(c, experiment, args.proposed)
        timings = {name: Timing() for name in candidates}
        results: dict[str, dict[StatKey, StatValues]] = {}
        for name, fn in candidates.items():  # warm-up: equal caches for every candidate
            _, results[name] = timed(engine, settings, fn)
        for i in range(repeat):  # interleaved, so drift hits every candidate alike
            for name, fn in candidates.items():
                seconds, results[name] = timed(engine, settings, fn)
                timings[name].runs.append(seconds)
            console.print(f"  repeat {i + 1}: " + ", ".join(
                f"{n} {t.runs[-1]:.2f} s" for n, t in timings.items()))
        mismatches = compare(results["reference"], results["abflow"])
        mismatches_proposed = (compare(results["reference"], results["proposed"])
                               if "proposed" in results else None)
        if args.explain:
            target = RESULTS_DIR / f"explain-{stamp}-{schema}.txt"
            explain(engine, experiment, settings, target, args.proposed)
            console.print(f"  wrote {target.relative_to(ROOT)}")
        incremental = None
        if args.incremental:
            console.print("  incremental refresh (initial a day earlier, then daily) …")
            incremental = run_incremental(engine, experiment, settings, results["abflow"],
                                          schema, vacuum=not args.no_vacuum)
            console.print(f"  initial {incremental.initial_seconds:.2f} s "
                          f"({incremental.initial_mode}), daily {incremental.daily_seconds:.2f} s "
                          f"({incremental.daily_mode}), same numbers as (b): "
                          f"{'yes' if incremental.match_full else 'NO'}")
        e2e = None
        e2e_incremental: dict[str, EndToEnd] = {}
        runs: list[EndToEnd] = []
        baseline: list[EndToEnd] = []
        if not args.skip_e2e:
            for i in range(args.e2e_repeat):
                console.print(f"  abflow run (end to end) {i + 1}/{args.e2e_repeat} …")
                runs.append(run_end_to_end(
                    url, schema, settings,
                    RESULTS_DIR / f"bench-{stamp}-{schema}-abflow-run-{i + 1}.log",
                    prefect_server=args.prefect_server))
                console.print(f"    {runs[-1].seconds:.1f} s wall, {runs[-1].cpu_seconds:.1f} s "
                              f"CPU, load {os.getloadavg()[0]:.1f}")
                if args.baseline_abflow:
                    baseline.append(run_end_to_end(
                        url, schema, settings,
                        RESULTS_DIR / f"bench-{stamp}-{schema}-baseline-run-{i + 1}.log",
                        abflow_bin=args.baseline_abflow, prefect_server=args.prefect_server))
                    console.print(f"    baseline {baseline[-1].seconds:.1f} s wall, "
                                  f"{baseline[-1].cpu_seconds:.1f} s CPU")
            e2e = sorted(runs, key=lambda r: r.seconds)[(len(runs) - 1) // 2]
            if args.incremental:
                # the daily `abflow run` of an incremental user: a first refresh as of the day
                # before, then the timed daily one (validation then reads only its window)
                for label, as_of, mode in (
                    ("first", generate.AS_OF - timedelta(days=1), "full"),
                    ("daily", generate.AS_OF, "daily"),
                ):
                    if mode == "daily" and not args.no_vacuum:
                        a_day_passes(engine, schema)
                    run = run_end_to_end(
                        url, schema, settings,
                        RESULTS_DIR / f"bench-{stamp}-{schema}-abflow-run-incremental-{label}.log",
                        prefect_server=args.prefect_server, as_of=as_of, incremental=mode)
                    e2e_incremental[label] = run
                    console.print(f"  abflow run, incremental ({label}): {run.seconds:.1f} s "
                                  f"wall, {run.cpu_seconds:.1f} s CPU, exit {run.exit_code}")
        return SizeResult(
            events=events, schema=schema, units=data.units,
            assignments_rows=data.assignments_rows, data_reused=data.reused,
            generate_seconds=data.seconds, reference=timings["reference"],
            abflow=timings["abflow"], proposed=timings.get("proposed"),
            match_abflow=not mismatches,
            match_proposed=None if mismatches_proposed is None else not mismatches_proposed,
            mismatches=mismatches[:20] + (mismatches_proposed or [])[:20],
            e2e=e2e, incremental=incremental, load_average=[load_before, os.getloadavg()[0]],
            e2e_runs=runs, e2e_baseline_runs=baseline, e2e_incremental=e2e_incremental,
        )
    finally:
        engine.dispose()


# --- reporting ----------------------------------------------------------------------------------


def server_info(url: str) -> dict[str, str]:
    """PostgreSQL version and the planner/memory settings that shape these numbers."""
    engine = make_engine(Settings(home=DATA_DIR), url=url)
    names = ("server_version", "max_parallel_workers_per_gather", "max_parallel_workers",
             "work_mem", "shared_buffers", "effective_cache_size", "jit")
    try:
        with engine.connect() as conn:
            with generate.raw_connection(conn).cursor() as cur:
                cur.execute("select version()")
                row = cur.fetchone()
                info = {"version": str(row[0]) if row else "?"}
                for name in names:
                    cur.execute(sql.SQL("show {}").format(sql.Identifier(name)))
                    row = cur.fetchone()
                    info[name] = str(row[0]) if row else "?"
    finally:
        engine.dispose()
    return info


def scaling(results: list[SizeResult], pick: Callable[[SizeResult], float | None]) -> float | None:
    """Exponent k in time ~ events^k between the smallest and largest size (1.0 = linear)."""
    pts = [(r.events, pick(r)) for r in results]
    pts = [(e, v) for e, v in pts if v]
    if len(pts) < 2 or pts[0][0] == pts[-1][0]:
        return None
    (e0, v0), (e1, v1) = pts[0], pts[-1]
    assert v0 is not None and v1 is not None
    return math.log(v1 / v0) / math.log(e1 / e0)


def summary(results: list[SizeResult]) -> dict[str, Any]:
    """Targets from benchmarks/README.md, evaluated on these results."""
    out: dict[str, Any] = {}
    at5 = next((r for r in results if r.events == 5_000_000), None)
    out["metric_step_ratio_at_5m"] = at5.ratio_abflow if at5 else None
    out["metric_step_target_met"] = at5.ratio_abflow <= 1.3 if at5 else None
    out["proposed_ratio_at_5m"] = at5.ratio_proposed if at5 else None
    inc = [r for r in results if r.incremental]
    out["incremental_daily_vs_full"] = {
        r.events: r.incremental.daily_seconds / r.abflow.median for r in inc if r.incremental}
    at20 = [r for r in inc if r.events == 20_000_000 and r.incremental]
    out["incremental_target_met"] = (
        all(r.incremental.daily_seconds <= 0.25 * r.abflow.median for r in at20 if r.incremental)
        if at20 else None)
    e2e = [r for r in results if r.e2e]
    # issue 15 sets the end-to-end budget at 1M and 5M events; larger sizes show theirs only
    targeted = [r for r in e2e if r.events in E2E_TARGET_SIZES]
    out["e2e_target_met"] = (all(r.e2e.seconds <= r.e2e_budget for r in targeted if r.e2e)
                             if targeted else None)
    rss = [r.e2e.peak_rss_mb for r in e2e if r.e2e]
    out["peak_rss_spread"] = (max(rss) / min(rss) - 1) if len(rss) > 1 else None
    out["peak_rss_target_met"] = (max(rss) <= 1.1 * min(rss)) if len(rss) > 1 else None
    out["scaling_exponent_reference"] = scaling(results, lambda r: r.reference.median)
    out["scaling_exponent_abflow"] = scaling(results, lambda r: r.abflow.median)
    out["scaling_exponent_proposed"] = scaling(
        results, lambda r: r.proposed.median if r.proposed else None)
    out["scaling_exponent_e2e"] = scaling(results, lambda r: r.e2e.seconds if r.e2e else None)
    k = out["scaling_exponent_abflow"]
    out["linear_target_met"] = (k <= 1.1) if k is not None else None
    return out


def _median(values: list[float]) -> float:
    return statistics.median(values)


def print_table(results: list[SizeResult]) -> None:
    """One row per size: medians, ratios, end-to-end time against its budget, peak RSS."""
    t = Table(title="abflow benchmark (median of the repeats; seconds)")
    for col in ("events", "units", "(a) ref", "(b) abflow", "b/a", "(b') proposed", "b'/a",
                "same numbers", "(c) e2e", "budget", "e2e CPU", "baseline e2e / CPU",
                "(d) peak RSS MB", "tree RSS MB"):
        t.add_column(col, justify="right")
    for r in results:
        same = "yes" if r.match_abflow else "NO"
        if r.match_proposed is not None:
            same += " / " + ("yes" if r.match_proposed else "NO")
        t.add_row(
            f"{r.events:,}", f"{r.units:,}", f"{r.reference.median:.2f}", f"{r.abflow.median:.2f}",
            f"{r.ratio_abflow:.2f}",
            f"{r.proposed.median:.2f}" if r.proposed else "-",
            f"{r.ratio_proposed:.2f}" if r.ratio_proposed is not None else "-",
            same,
            f"{r.e2e.seconds:.1f}" + ("" if r.e2e.exit_code == 0 else f" (exit {r.e2e.exit_code})")
            if r.e2e else "-",
            f"{r.e2e_budget:.1f}",
            f"{r.e2e.cpu_seconds:.1f}" if r.e2e else "-",
            (f"{_median([b.seconds for b in r.e2e_baseline_runs]):.1f} / "
             f"{_median([b.cpu_seconds for b in r.e2e_baseline_runs]):.1f}")
            if r.e2e_baseline_runs else "-",
            f"{r.e2e.peak_rss_mb:.0f}" if r.e2e else "-",
            f"{r.e2e.peak_tree_rss_mb:.0f}" if r.e2e else "-",
        )
    console.print(t)
    incremental = [r for r in results if r.incremental]
    if not incremental:
        return
    t = Table(title="incremental refresh (seconds)")
    for col in ("events", "(b) full pass", "first refresh", "daily refresh", "daily / full",
                "same numbers", "e2e full", "e2e first", "e2e daily", "e2e daily / full"):
        t.add_column(col, justify="right")
    for r in incremental:
        assert r.incremental is not None
        first, daily = r.e2e_incremental.get("first"), r.e2e_incremental.get("daily")
        t.add_row(
            f"{r.events:,}", f"{r.abflow.median:.2f}", f"{r.incremental.initial_seconds:.2f}",
            f"{r.incremental.daily_seconds:.2f}",
            f"{r.incremental.daily_seconds / r.abflow.median:.2f}",
            "yes" if r.incremental.match_full else "NO",
            f"{r.e2e.seconds:.1f}" if r.e2e else "-",
            f"{first.seconds:.1f}" if first else "-",
            f"{daily.seconds:.1f}" if daily else "-",
            f"{daily.seconds / r.e2e.seconds:.2f}" if daily and r.e2e else "-",
        )
    console.print(t)


def to_json(r: SizeResult) -> dict[str, Any]:
    """A size's result as plain JSON (medians, every run, ratios and the budget)."""
    out = asdict(r)
    out["reference"]["median"] = r.reference.median
    out["abflow"]["median"] = r.abflow.median
    if r.proposed and out["proposed"] is not None:
        out["proposed"]["median"] = r.proposed.median
    out["ratio_abflow_vs_reference"] = r.ratio_abflow
    out["ratio_proposed_vs_reference"] = r.ratio_proposed
    out["e2e_budget_seconds"] = r.e2e_budget
    out["e2e_over_budget"] = (r.e2e.seconds / r.e2e_budget) if r.e2e else None
    out["incremental_daily_vs_abflow"] = (
        r.incremental.daily_seconds / r.abflow.median if r.incremental else None)
    return out


# --- entry point --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    p.add_argument("--sizes", type=int, nargs="+", default=[1_000_000],
                   help="event counts, e.g. 1000000 5000000 20000000")
    p.add_argument("--repeat", type=int, nargs="+", default=[3],
                   help="timed runs after one warm-up: one value, or one per size")
    p.add_argument("--database-url", default=None,
                   help="PostgreSQL URL; default: embedded server in benchmarks/.data/pgdata")
    p.add_argument("--set", dest="settings", action="append", default=[], metavar="NAME=VALUE",
                   help="session parameter for every measured query, e.g. work_mem=64MB")
    p.add_argument("--proposed", type=Path, default=None, metavar="SQL_FILE",
                   help="also time a candidate metric_stats.sql (b'), same parameters/columns")
    p.add_argument("--skip-e2e", action="store_true", help="skip the `abflow run` subprocess")
    p.add_argument("--e2e-repeat", type=int, default=1, metavar="N",
                   help="run `abflow run` N times per size (the table shows the median)")
    p.add_argument("--baseline-abflow", type=Path, default=None, metavar="ABFLOW_BIN",
                   help="also run this abflow executable end to end, interleaved (A/B)")
    p.add_argument("--prefect-server", choices=("kept", "temporary"), default="kept",
                   help="kept (default): `abflow run` uses the local Prefect server the CLI "
                        "keeps, started before the timed runs (`abflow server start`); "
                        "temporary: each run boots its own (ABFLOW_PREFECT_SERVER_IDLE_MINUTES=0)")
    p.add_argument("--incremental", action="store_true",
                   help="also time an incremental refresh: initial a day before as_of, then daily")
    p.add_argument("--no-vacuum", action="store_true",
                   help="time the daily refresh right after the first one, without vacuuming the "
                        "state tables in between as autovacuum would in the day that passes")
    p.add_argument("--regenerate", action="store_true", help="regenerate data even if present")
    p.add_argument("--events-per-unit", type=int, default=generate.DEFAULT_EVENTS_PER_UNIT,
                   help="data density: units = events / this (default 10; own schema otherwise)")
    p.add_argument("--explain", action="store_true",
                   help="also write EXPLAIN (ANALYZE, BUFFERS) of the three queries per size")
    return p.parse_args(argv)


def write_json(out: Path, stamp: str, argv: Sequence[str] | None, repeats: list[int],
               settings: dict[str, str], info: dict[str, str], results: list[SizeResult]) -> None:
    """Write (or rewrite) the results file with every size measured so far."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "timestamp": stamp,
        "command": " ".join([Path(sys.executable).name, "-m", "benchmarks.run",
                             *(argv if argv is not None else sys.argv[1:])]),
        "repeat_per_size": dict(zip([r.events for r in results], repeats, strict=False)),
        "session_settings": settings,
        "server": info,
        "machine": {"cpus": os.cpu_count(),
                    "memory_gb": round(psutil.virtual_memory().total / 2**30),
                    "python": platform.python_version()},
        "rss_method": "the `abflow run` process's own ru_maxrss from wait4 (peak_rss_mb); it plus "
                      "its descendants by psutil polling every 250 ms (peak_tree_rss_mb); "
                      "ru_maxrss_children_mb is "
                      "getrusage(RUSAGE_CHILDREN).ru_maxrss after the run (max over all children)",
        "sizes": [to_json(r) for r in results],
        "targets": summary(results),
    }, indent=2, default=str) + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark for every size; print the table and write results JSON."""
    args = parse_args(argv)
    settings = parse_settings(args.settings)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    url = args.database_url or embedded_url(DATA_DIR / "pgdata")
    info = server_info(url)
    console.print(f"PostgreSQL {info['server_version']}, max_parallel_workers_per_gather="
                  f"{info['max_parallel_workers_per_gather']}, work_mem={info['work_mem']}, "
                  f"session settings: {settings or 'none'}")
    sizes = sorted(args.sizes)
    if len(args.repeat) not in (1, len(sizes)):
        raise SystemExit("--repeat: give one value, or one per size")
    repeats = args.repeat * len(sizes) if len(args.repeat) == 1 else args.repeat
    out = RESULTS_DIR / f"bench-{stamp}.json"
    results: list[SizeResult] = []
    kept = not args.skip_e2e and args.prefect_server == "kept"
    if kept:  # booted once, untimed: what a scheduled or repeated `abflow run` finds
        info["prefect_server"] = kept_server("start")
        console.print(info["prefect_server"])
    else:
        info["prefect_server"] = "temporary (one per run)" if not args.skip_e2e else "-"
    try:
        for n, repeat in zip(sizes, repeats, strict=True):
            results.append(measure_size(url, n, repeat, args, settings, stamp))
            write_json(out, stamp, argv, repeats, settings, info, results)  # partials survive
    finally:
        if kept:
            console.print(kept_server("stop"))
    print_table(results)
    for r in results:
        for line in r.mismatches:
            console.print(f"[red]mismatch at {r.events:,}:[/red] {line}")
    console.print(summary(results))
    console.print(f"wrote {out.relative_to(ROOT)}")
    ok = all(r.match_abflow and r.match_proposed is not False
             and (r.incremental is None or r.incremental.match_full) for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
