"""Raw inputs as Parquet files or DuckDB tables (SPEC §3.1 columns), for demos, tests, benchmarks.

Parquet layout: `assigned_at` / `occurred_at` are UTC-adjusted timestamps (microseconds),
`attributes` / `properties` JSON text (NULL when absent), `value` double. DuckDB reads them as
TIMESTAMPTZ and VARCHAR; Spark as TIMESTAMP (session time zone UTC) and STRING.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

ASSIGNMENT_COLUMNS = ("experiment_key", "unit_id", "variant_key", "assigned_at", "attributes")
EVENT_COLUMNS = ("unit_id", "event_name", "value", "occurred_at", "properties")


def _json_text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


def normalise(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """The raw-input columns with JSON as text and timestamps as UTC microseconds."""
    out = pd.DataFrame(index=frame.index)
    for name in columns:
        if name not in frame.columns:
            out[name] = None
            continue
        col = frame[name]
        if name in ("attributes", "properties"):
            out[name] = pd.array([_json_text(v) for v in col], dtype="str")
        elif name in ("assigned_at", "occurred_at"):
            out[name] = pd.to_datetime(col, utc=True).astype("datetime64[us, UTC]")
        elif name == "value":
            out[name] = pd.to_numeric(col).astype("float64")
        else:
            out[name] = col.astype("str")
    return out.reset_index(drop=True)


def write_parquet(
    frame: pd.DataFrame, path: Path, columns: tuple[str, ...], *, files: int = 1
) -> None:
    """Write the frame as `files` Parquet files under directory `path` (part-0000.parquet, ...)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.mkdir(parents=True, exist_ok=True)
    data = normalise(frame, columns)
    schema = pa.schema(
        [
            (c, pa.timestamp("us", tz="UTC"))
            if c in ("assigned_at", "occurred_at")
            else (c, pa.float64())
            if c == "value"
            else (c, pa.string())
            for c in columns
        ]
    )
    size = max(1, -(-len(data) // files))
    for i in range(files):
        part = data.iloc[i * size : (i + 1) * size]
        if i and part.empty:
            break
        table = pa.Table.from_pandas(part, schema=schema, preserve_index=False)
        pq.write_table(table, path / f"part-{i:04d}.parquet")


def write_demo_parquet(
    root: Path, assignments: pd.DataFrame, events: pd.DataFrame
) -> dict[str, str]:
    """assignments/ and events/ under root; returns the two `parquet:` source settings."""
    write_parquet(assignments, root / "assignments", ASSIGNMENT_COLUMNS)
    write_parquet(events, root / "events", EVENT_COLUMNS)
    return {
        "assignments": f"parquet:{root / 'assignments'}/*.parquet",
        "events": f"parquet:{root / 'events'}/*.parquet",
    }


DUCKDB_DDL = (
    "create table if not exists assignments (experiment_key varchar not null,"
    " unit_id varchar not null, variant_key varchar not null, assigned_at timestamptz not null,"
    " attributes json)",
    "create table if not exists events (unit_id varchar not null, event_name varchar not null,"
    " value double, occurred_at timestamptz not null, properties json)",
)


def load_duckdb(con: Any, assignments: pd.DataFrame, events: pd.DataFrame) -> None:
    """Append the frames to DuckDB tables `assignments` and `events` (created if missing)."""
    for ddl in DUCKDB_DDL:
        con.execute(ddl)
    a = normalise(assignments, ASSIGNMENT_COLUMNS)
    e = normalise(events, EVENT_COLUMNS)
    con.register("abflow_load_assignments", a)
    con.register("abflow_load_events", e)
    try:
        con.execute("insert into assignments select * from abflow_load_assignments")
        con.execute("insert into events select * from abflow_load_events")
    finally:
        con.unregister("abflow_load_assignments")
        con.unregister("abflow_load_events")
