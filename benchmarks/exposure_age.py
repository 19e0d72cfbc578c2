"""What the exposure-age cohorts and quantile metrics cost, statement by statement.

The demo's checkout_button (with its p90 latency guardrail) scaled up by --scale, loaded into
DuckDB (in memory) and PostgreSQL (embedded, benchmarks/.data/pgdata, schema bench_exposure_age);
after the stage tables (units, segments, metrics) each statement of the plan is timed alone:

* unit_values_without_cohorts  the one pass over events without the exposure-age aggregates
                               (what an experiment with analysis.exposure_age: false runs);
* unit_values         the one pass of every run: per-unit values and their exposure-age cohorts,
                      materialised as the stage the statements below read;
* metric_stats        the final step: per arm and segment, from the stage;
* exposure_age_stats  the cohorts' statistics, from the same stage (no events read);
* metric_quantiles    the order statistics of the quantile metrics (unit level from the stage;
                      event level re-reads the quantile metrics' events).

    .venv/bin/python -m benchmarks.exposure_age --scale 10 --repeat 3
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import create_engine, text

from abflow.definitions import Experiment, load_experiment_file
from abflow.demo_data import DEMO_EXPERIMENTS_DIR, generate_demo_data
from abflow.settings import normalize_database_url
from abflow.warehouse import plan
from abflow.warehouse.dialects import Statement
from abflow.warehouse.engine import embedded_url
from abflow.warehouse.engines import DuckDBWarehouse, PostgresExecutor, execute_plan
from abflow.warehouse.extract import default_sources

ROOT = Path(__file__).resolve().parents[1]
AS_OF = datetime(2026, 11, 21, tzinfo=UTC)
SCHEMA = "bench_exposure_age"


def statements(experiment: Experiment) -> dict[str, Statement]:
    """The timed statements (fresh copies: binding mutates them)."""
    values = plan.analysis_values(experiment, AS_OF)
    without = {**values, "exposure_age": 0}
    # in this order: the stage the later statements read is the one with the cohorts
    return {
        "unit_values_without_cohorts": plan.unit_values_statement(experiment, without),
        "unit_values": plan.unit_values_statement(experiment, values),
        "metric_stats": plan.final_statement(values),
        "exposure_age_stats": plan.exposure_age_statement(experiment, values),
        "metric_quantiles": plan.quantile_statement(experiment, values),
    }


def time_engine(
    name: str,
    session: Callable[[], Any],
    experiment: Experiment,
    repeat: int,
) -> dict[str, float]:
    """Median seconds per statement, each run once as a warm-up then `repeat` times."""
    sources = default_sources("assignments", "events")
    out: dict[str, list[float]] = {}
    with session() as executor:
        execute_plan(executor, plan.stage_statements(experiment, AS_OF), sources)
        for i in range(repeat + 1):
            for key, st in statements(experiment).items():
                started = time.perf_counter()
                execute_plan(executor, [st], sources)
                if i:
                    out.setdefault(key, []).append(time.perf_counter() - started)
    medians = {k: statistics.median(v) for k, v in out.items()}
    print(f"{name}: " + ", ".join(f"{k} {v:.2f}s" for k, v in medians.items()))
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--database-url", help="PostgreSQL URL; default: embedded server")
    args = parser.parse_args()
    experiment = load_experiment_file(DEMO_EXPERIMENTS_DIR / "checkout_button.yaml")
    assignments, events = generate_demo_data([experiment], as_of=AS_OF, scale=args.scale)
    size = f"{len(assignments):,} exposures, {len(events):,} events"
    print(f"checkout_button x{args.scale:g}: {size}")

    duck = DuckDBWarehouse(":memory:")
    con = duck.connection()
    _load_duckdb(con, assignments, events)
    time_engine("duckdb", duck.session, experiment, args.repeat)

    url = args.database_url or embedded_url(ROOT / "benchmarks" / ".data" / "pgdata")
    engine = create_engine(normalize_database_url(url))
    _load_postgres(engine, assignments, events)

    def pg_session() -> Any:
        class _Session:
            def __enter__(self) -> PostgresExecutor:
                self.conn = engine.connect()
                self.tx = self.conn.begin()
                self.conn.execute(text(f"set local search_path to {SCHEMA}"))
                return PostgresExecutor(self.conn)

            def __exit__(self, *exc: object) -> None:
                self.tx.rollback()
                self.conn.close()

        return _Session()

    time_engine("postgres", pg_session, experiment, args.repeat)
    engine.dispose()


def _json(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    import json

    out = frame.copy()
    out[column] = out[column].map(lambda d: None if d is None else json.dumps(d))
    return out


def _load_duckdb(con: Any, assignments: pd.DataFrame, events: pd.DataFrame) -> None:
    con.register("a_df", _json(assignments, "attributes"))
    con.register("e_df", _json(events, "properties"))
    con.execute(
        "create table assignments as select experiment_key, unit_id, variant_key, assigned_at,"
        " cast(attributes as json) as attributes from a_df"
    )
    con.execute(
        "create table events as select unit_id, event_name, value, occurred_at,"
        " cast(properties as json) as properties from e_df"
    )


def _load_postgres(engine: Any, assignments: pd.DataFrame, events: pd.DataFrame) -> None:
    with engine.begin() as conn:
        conn.execute(text(f"drop schema if exists {SCHEMA} cascade"))
        conn.execute(text(f"create schema {SCHEMA}"))
        conn.execute(
            text(
                f"create table {SCHEMA}.assignments (experiment_key text, unit_id text,"
                " variant_key text, assigned_at timestamptz, attributes jsonb)"
            )
        )
        conn.execute(
            text(
                f"create table {SCHEMA}.events (unit_id text, event_name text,"
                " value double precision, occurred_at timestamptz, properties jsonb)"
            )
        )
    with engine.begin() as conn:
        raw = conn.connection.driver_connection
        for table, frame, cols in (
            ("assignments", _json(assignments, "attributes"),
             ("experiment_key", "unit_id", "variant_key", "assigned_at", "attributes")),
            ("events", _json(events, "properties"),
             ("unit_id", "event_name", "value", "occurred_at", "properties")),
        ):
            with raw.cursor() as cur, cur.copy(
                f"copy {SCHEMA}.{table} ({', '.join(cols)}) from stdin"
            ) as copy:
                for row in frame[list(cols)].itertuples(index=False):
                    copy.write_row([None if pd.isna(v) else v for v in row])
        conn.execute(text(f"create index on {SCHEMA}.events (unit_id, occurred_at)"))
        conn.execute(text(f"analyze {SCHEMA}.assignments"))
        conn.execute(text(f"analyze {SCHEMA}.events"))


if __name__ == "__main__":
    main()
