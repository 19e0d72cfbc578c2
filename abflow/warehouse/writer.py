"""Transactional, idempotent writes of one experiment's results (replace by experiment + as_of)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, text

from abflow.results import ExperimentResult

_RESULT_TABLES = ("variant_stats", "insights", "health_checks", "recommendations")


def _json_default(value: Any) -> Any:
    """numpy scalars and other stragglers in details dicts become plain JSON values."""
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def to_json(value: Any) -> str:
    """JSON text for a jsonb column."""
    return json.dumps(value, default=_json_default)


def _insert(conn: Connection, table: str, rows: Iterable[dict[str, Any]], json_cols=()) -> None:
    rows = list(rows)
    if not rows:
        return
    cols = list(rows[0])
    # Table and column names come from our own frozen records, never from user input.
    values = ", ".join(f"cast(:{c} as jsonb)" if c in json_cols else f":{c}" for c in cols)
    stmt = text(f"insert into {table} ({', '.join(cols)}) values ({values})")  # noqa: S608
    params = [{c: (to_json(r[c]) if c in json_cols else r[c]) for c in cols} for r in rows]
    conn.execute(stmt, params)


def advisory_key(experiment_key: str) -> str:
    """Advisory-lock namespace text for one experiment (hashed to a bigint in SQL)."""
    return f"abflow:experiment:{experiment_key}"


def lock_experiment(conn: Connection, experiment_key: str, timeout_seconds: float) -> None:
    """Take the per-experiment transaction advisory lock, waiting at most timeout_seconds."""
    conn.execute(
        text("select set_config('lock_timeout', :t, true)"),
        {"t": f"{int(timeout_seconds * 1000)}ms"},
    )
    conn.execute(
        text("select pg_advisory_xact_lock(hashtextextended(:k, 0))"),
        {"k": advisory_key(experiment_key)},
    )
    conn.execute(text("select set_config('lock_timeout', '0', true)"))


def write_result(conn: Connection, result: ExperimentResult) -> None:
    """Replace the rows for (experiment, as_of) with this result; caller owns the transaction."""
    run = result.run
    # Deleting the old run cascades to its result rows, so a rerun replaces and never duplicates.
    conn.execute(
        text("delete from analysis_runs where experiment_key = :k and as_of = :a"),
        {"k": run.experiment_key, "a": run.as_of},
    )
    _insert(conn, "analysis_runs", [run.as_row()])
    _insert(conn, "variant_stats", (r.as_row() for r in result.variant_stats))
    _insert(conn, "insights", (r.as_row() for r in result.insights))
    _insert(conn, "health_checks", (r.as_row() for r in result.health_checks), ("details",))
    _insert(conn, "lift_by_exposure_age", (r.as_row() for r in result.lift_by_exposure_age))
    if result.recommendation is not None:
        _insert(conn, "recommendations", [result.recommendation.as_row()], ("details",))


def record_failed_run(conn: Connection, result: ExperimentResult) -> None:
    """Insert a failed run unless (experiment, as_of) already has one; earlier results stay."""
    row = result.run.as_row()
    cols = ", ".join(row)
    values = ", ".join(f":{c}" for c in row)
    conn.execute(
        text(
            f"insert into analysis_runs ({cols}) values ({values})"  # noqa: S608
            " on conflict (experiment_key, as_of) do nothing"
        ),
        row,
    )
