"""The metric step and `abflow run` on PostgreSQL, DuckDB (file and Parquet) and Spark local.

Same data on every engine: the benchmark's generated PostgreSQL schema (benchmarks/generate.py,
`bench_<size>`) is exported once per size with COPY into `benchmarks/.data/engines/<schema>/`:
Parquet files (`assignments/`, `events/`) and a DuckDB file with the same rows as tables. Then,
per engine, the metric step (all statements of the analysis plan: units, segments, metrics,
sufficient statistics, exposure summary) runs once as a warm-up and `--repeat` times, and the
sufficient statistics of every engine must equal PostgreSQL's to 1e-9. With `--e2e`, `abflow
run` runs once per engine as a subprocess (results written to the PostgreSQL results schema).

    .venv/bin/python -m benchmarks.engines --sizes 1000000 --repeat 3 --e2e
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from abflow.results import SufficientStats
from abflow.settings import Settings
from abflow.warehouse import extract
from abflow.warehouse.dialects import Source
from abflow.warehouse.engine import embedded_url, make_engine
from abflow.warehouse.engines import DuckDBWarehouse, PostgresExecutor, SparkWarehouse
from benchmarks import generate

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT / "benchmarks" / ".data"
RESULTS_DIR = ROOT / "benchmarks" / "results"
ABFLOW_BIN = ROOT / ".venv" / "bin" / "abflow"
console = Console(width=150)

ENGINES = ("postgres", "duckdb", "duckdb_parquet", "spark_parquet")


def export(pg_url: str, schema: str, target: Path) -> dict[str, str]:
    """COPY the schema's raw tables to CSV, then to Parquet and a DuckDB file (once)."""
    import duckdb
    import psycopg

    done = target / "complete"
    parquet = {
        "assignments": f"parquet:{target / 'assignments'}/*.parquet",
        "events": f"parquet:{target / 'events'}/*.parquet",
    }
    if done.is_file():
        return parquet
    target.mkdir(parents=True, exist_ok=True)
    url = pg_url.replace("postgresql+psycopg://", "postgresql://")
    types = {
        "assignments": "experiment_key varchar, unit_id varchar, variant_key varchar, "
        "assigned_at timestamptz, attributes json",
        "events": "unit_id varchar, event_name varchar, value double, occurred_at timestamptz, "
        "properties json",
    }
    con = duckdb.connect(str(target / "warehouse.duckdb"))
    con.execute("SET TimeZone = 'UTC'")
    with psycopg.connect(url) as pg:
        for table, columns in types.items():
            csv = target / f"{table}.csv"
            names = ", ".join(c.split()[0] for c in columns.split(", "))
            with pg.cursor() as cur, csv.open("wb") as out:
                # schema from generate.schema_for, table and columns from the dict above
                copy_sql = f'copy (select {names} from "{schema}"."{table}") to stdout (format csv)'  # noqa: S608
                with cur.copy(copy_sql) as copy:
                    for chunk in copy:
                        out.write(chunk)
            cols = "{" + ", ".join(
                f"'{c.split()[0]}': '{c.split(maxsplit=1)[1]}'" for c in columns.split(", ")
            ) + "}"
            con.execute(f"create or replace table {table} as select * from "  # noqa: S608
                        f"read_csv('{csv}', header=false, columns={cols})")
            (target / table).mkdir(exist_ok=True)
            con.execute(f"copy (select * from {table}) to '{target / table}' "  # noqa: S608
                        "(format parquet, per_thread_output true, overwrite_or_ignore true)")
            csv.unlink()
    con.close()
    done.write_text("ok\n")
    return parquet


def _median(runs: list[float]) -> float:
    return statistics.median(runs) if runs else float("nan")


def time_engine(fn: Callable[[], list[SufficientStats]], repeat: int) -> tuple[list[float], Any]:
    fn()  # warm-up
    runs, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        runs.append(time.perf_counter() - started)
    return runs, result


def same(a: list[SufficientStats], b: list[SufficientStats]) -> bool:
    import math

    by = {(s.metric_key, s.variant_key, s.segment): asdict(s) for s in b}
    if set(by) != {(s.metric_key, s.variant_key, s.segment) for s in a}:
        return False
    for s in a:
        other = by[(s.metric_key, s.variant_key, s.segment)]
        for k, v in asdict(s).items():
            w = other[k]
            if isinstance(v, float) and isinstance(w, float):
                if not math.isclose(v, w, rel_tol=1e-9, abs_tol=1e-12):
                    return False
            elif v != w:
                return False
    return True


def e2e(pg_url: str, schema: str, env_extra: dict[str, str], log: Path) -> dict[str, Any]:
    cmd = [str(ABFLOW_BIN), "run", "--experiment", generate.EXPERIMENT_KEY,
           "--as-of", generate.AS_OF.strftime("%Y-%m-%dT%H:%M:%SZ")]
    env = {**os.environ, "ABFLOW_DATABASE_URL": pg_url, "ABFLOW_SCHEMA": schema,
           "PREFECT_HOME": str(DATA_DIR / "prefect"), "PGOPTIONS": "-c enable_indexscan=off",
           **env_extra}
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with log.open("w") as out:
        code = subprocess.call(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    return {"seconds": time.perf_counter() - started, "exit_code": code,
            "env": {k: v for k, v in env_extra.items()}, "log": str(log.relative_to(ROOT))}


def measure(size: int, args: argparse.Namespace, pg_url: str, stamp: str,
            spark: list[SparkWarehouse]) -> dict[str, Any]:
    """One size: export, the metric step per engine, optionally `abflow run` per engine."""
    experiment = generate.experiment()
    schema = generate.schema_for(size)
    engine = make_engine(Settings(ABFLOW_SCHEMA=schema, home=DATA_DIR), url=pg_url)
    generate.ensure_data(engine, schema, size)
    started = time.perf_counter()
    parquet = export(pg_url, schema, DATA_DIR / "engines" / schema)
    console.print(f"[bold]{size:,} events[/bold] ({schema}); export ready in "
                  f"{time.perf_counter() - started:.1f} s")
    tables = extract.default_sources("assignments", "events")
    psources = {k: Source.parse(v) for k, v in parquet.items()}
    duck = DuckDBWarehouse(str(DATA_DIR / "engines" / schema / "warehouse.duckdb"))

    def on_pg() -> list[SufficientStats]:
        with engine.begin() as conn:
            conn.exec_driver_sql("set local enable_indexscan = off")
            stats, _ = extract.analyse_in_warehouse(
                PostgresExecutor(conn), experiment, generate.AS_OF, tables)
        return stats

    def on(name: str) -> list[SufficientStats]:
        warehouse: Any = spark[0] if name == "spark_parquet" else duck
        sources = tables if name == "duckdb" else psources
        with warehouse.session() as executor:
            stats, _ = extract.analyse_in_warehouse(executor, experiment, generate.AS_OF, sources)
        return stats

    row: dict[str, Any] = {"schema": schema}
    results: dict[str, list[SufficientStats]] = {}
    for name in args.engines:
        if name == "spark_parquet" and not spark:
            t0 = time.perf_counter()
            spark.append(SparkWarehouse.from_url("spark://local[2]"))
            row["spark_start_seconds"] = time.perf_counter() - t0
        fn = on_pg if name == "postgres" else (lambda name=name: on(name))
        runs, results[name] = time_engine(fn, args.repeat)
        row[name] = {"runs": runs, "median": _median(runs)}
        console.print(f"  {name}: " + ", ".join(f"{r:.2f}" for r in runs) + " s")
    base = results.get("postgres")
    row["same_numbers"] = {n: same(base, r) for n, r in results.items()} if base else {}
    duck.close()  # an `abflow run` subprocess opens the file itself
    if args.e2e:
        logs = RESULTS_DIR / f"engines-{stamp}-{schema}"
        envs: dict[str, dict[str, str]] = {
            "postgres": {},
            "duckdb": {"ABFLOW_WAREHOUSE_URL": f"duckdb:///{duck.path}"},
            "duckdb_parquet": {"ABFLOW_WAREHOUSE_URL": "duckdb:///:memory:",
                               "ABFLOW_ASSIGNMENTS_SOURCE": parquet["assignments"],
                               "ABFLOW_EVENTS_SOURCE": parquet["events"]},
            "spark_parquet": {"ABFLOW_WAREHOUSE_URL": "spark://local[2]",
                              "ABFLOW_ASSIGNMENTS_SOURCE": parquet["assignments"],
                              "ABFLOW_EVENTS_SOURCE": parquet["events"]},
        }
        for name in args.engines:
            row.setdefault("e2e", {})[name] = e2e(pg_url, schema, envs[name],
                                                   Path(f"{logs}-{name}.log"))
            console.print(f"  abflow run on {name}: {row['e2e'][name]['seconds']:.1f} s "
                          f"(exit {row['e2e'][name]['exit_code']})")
    engine.dispose()
    return row


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.engines", description=__doc__)
    p.add_argument("--sizes", type=int, nargs="+", default=[1_000_000])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    p.add_argument("--e2e", action="store_true", help="also time `abflow run` per engine")
    p.add_argument("--database-url", default=None)
    args = p.parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    pg_url = args.database_url or embedded_url(DATA_DIR / "pgdata")
    out: dict[str, Any] = {"stamp": stamp, "argv": list(argv or []), "sizes": {}}
    spark: list[SparkWarehouse] = []
    for size in sorted(args.sizes):
        out["sizes"][size] = measure(size, args, pg_url, stamp, spark)
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        (RESULTS_DIR / f"engines-{stamp}.json").write_text(json.dumps(out, indent=2, default=str))
    console.print(json.dumps({s: {k: (v["median"] if isinstance(v, dict) and "median" in v else v)
                                  for k, v in r.items() if k != "e2e"}
                              for s, r in out["sizes"].items()}, indent=1, default=str))
    console.print(f"wrote benchmarks/results/engines-{stamp}.json")
    ok = all(all(r["same_numbers"].values()) for r in out["sizes"].values())
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
