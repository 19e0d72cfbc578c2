"""Extraction: run the aggregate queries in the warehouse; only sufficient statistics come back."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import sql
from sqlalchemy import Connection

from abflow.definitions import Experiment
from abflow.results import ExposureSummary, SufficientStats
from abflow.warehouse.sqlfiles import read_sql

# Event values outside [-VALUE_LIMIT, VALUE_LIMIT] (and NaN, ±Infinity) are bad rows: the metric
# SQL reads them as missing, so sums of squares cannot overflow double precision (~1e154 would),
# and the critical GX check gx_events_value_finite_in_range names them (the run is unhealthy).
VALUE_LIMIT = 1e12


def relation(name: str) -> sql.Composable:
    """Quote a possibly schema-qualified relation name ('view' or 'schema.view') as identifiers."""
    parts = [p for p in name.split(".") if p]
    if not 1 <= len(parts) <= 2:
        raise ValueError(f"source relation {name!r}: expected 'name' or 'schema.name'")
    return sql.Identifier(*parts)


def metric_definitions(experiment: Experiment) -> list[dict[str, Any]]:
    """Metric definitions as plain records (metric_arrays; the incremental definition hash)."""
    return [
        {
            "metric_key": m.key,
            "kind": m.kind,
            "num_event": m.numerator_event,
            "num_agg": m.numerator_agg,
            "den_event": m.denominator_event,
            "den_agg": m.denominator_agg,
            "window_hours": m.window_hours,
        }
        for m in experiment.metrics
    ]


def metric_arrays(experiment: Experiment) -> dict[str, list[Any]]:
    """Metric definitions as parallel arrays (metric_events.sql unnests them in lockstep)."""
    defs = metric_definitions(experiment)
    names = {
        "metric_keys": "metric_key",
        "metric_kinds": "kind",
        "num_events": "num_event",
        "num_aggs": "num_agg",
        "den_events": "den_event",
        "den_aggs": "den_agg",
        "window_hours": "window_hours",
    }
    arrays = {param: [d[field] for d in defs] for param, field in names.items()}
    return {"metric_ids": list(range(1, len(defs) + 1)), **arrays}


def _execute(conn: Connection, template: str, params: dict[str, Any], sources: dict[str, str]):
    query = sql.SQL(template).format(**{k: relation(v) for k, v in sources.items()})
    raw = conn.connection.dbapi_connection
    assert raw is not None
    cur = raw.cursor()
    cur.execute(query, params)
    return cur


def fetch_sufficient_stats(
    conn: Connection,
    experiment: Experiment,
    as_of: datetime,
    *,
    assignments: str,
    events: str,
) -> list[SufficientStats]:
    """One pass over the experiment's events -> sufficient statistics per metric/variant/segment.

    Must run inside a transaction: the unit tables are temporary and dropped on commit.
    """
    lookback = experiment.analysis.cuped.lookback_days if experiment.analysis.cuped else 0
    params = {
        "experiment_key": experiment.key,
        "start_at": experiment.start_at,
        "as_of": min(as_of, experiment.end_at) if experiment.end_at else as_of,
        "value_limit": VALUE_LIMIT,
        **metric_arrays(experiment),
        "segments": list(experiment.analysis.segments),
        "variants": [v.key for v in experiment.variants],
        "lookback_days": lookback,
    }
    build_analysis_tables(conn, params, assignments=assignments)
    cur = _execute(conn, read_sql("queries/metric_stats.sql"), params, {"events": events})
    cols = [d.name for d in cur.description or ()]
    rows = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
    cur.close()
    return [stats_from_row(r) for r in rows]


ANALYSIS_TABLES = (
    ("queries/units.sql", "abflow_units"),
    ("queries/unit_segments.sql", "abflow_unit_segments"),
    ("queries/metric_events.sql", "abflow_metric_events"),
)


def build_analysis_tables(conn: Connection, params: dict[str, Any], *, assignments: str) -> None:
    """Create and ANALYZE the temporary tables metric_stats.sql reads (units, segments, metrics).

    Real row counts matter: without them the planner guessed a few dozen units or metric rows
    and chose nested loops or sorts that cost 10x (see benchmarks/README.md).
    """
    for step, table in ANALYSIS_TABLES:
        _execute(conn, read_sql(step), params, {"assignments": assignments}).close()
        _execute(conn, f"analyze {table}", {}, {}).close()


def stats_from_row(r: dict[str, Any]) -> SufficientStats:
    """One row of metric_stats.sql (or incremental_stats.sql) as a SufficientStats record."""
    return SufficientStats(
        metric_key=r["metric_key"],
        variant_key=r["variant_key"],
        segment=r["segment"],
        exposed_units=int(r["exposed_units"]),
        units=int(r["units"]),
        sum=float(r["sum"]),
        sum_squares=float(r["sum_squares"]),
        denominator_sum=_opt(r["denominator_sum"]),
        denominator_sum_squares=_opt(r["denominator_sum_squares"]),
        sum_products=_opt(r["sum_products"]),
        covariate_sum=_opt(r["covariate_sum"]),
        covariate_sum_squares=_opt(r["covariate_sum_squares"]),
        covariate_sum_products=_opt(r["covariate_sum_products"]),
        contaminated_units=int(r["contaminated_units"]),
    )


def fetch_exposure_summary(
    conn: Connection, experiment: Experiment, as_of: datetime, *, assignments: str
) -> ExposureSummary:
    """Units per variant, multiple exposures and unknown variants from the assignments source."""
    params = {
        "experiment_key": experiment.key,
        "start_at": experiment.start_at,
        "as_of": min(as_of, experiment.end_at) if experiment.end_at else as_of,
        "variants": [v.key for v in experiment.variants],
    }
    cur = _execute(
        conn, read_sql("queries/exposure_summary.sql"), params, {"assignments": assignments}
    )
    rows = cur.fetchall()
    cur.close()
    by_variant = {v.key: 0 for v in experiment.variants}
    unknown: dict[str, int] = {}
    multiple = 0
    sample_multiple: tuple[str, ...] = ()
    firsts, lasts = [], []
    for variant_key, is_multiple, is_unknown, units, first_at, last_at, sample in rows:
        if is_multiple:
            multiple += int(units)
            sample_multiple = tuple(sample or ())
        elif is_unknown:
            unknown[variant_key] = int(units)
        else:
            by_variant[variant_key] = int(units)
            firsts.append(first_at)
            lasts.append(last_at)
    return ExposureSummary(
        units_by_variant=by_variant,
        multiple_exposure_units=multiple,
        unknown_variant_units=unknown,
        first_exposed_at=min(firsts) if firsts else None,
        last_exposed_at=max(lasts) if lasts else None,
        sample_multiple=sample_multiple,
    )


def _opt(value: Any) -> float | None:
    return None if value is None else float(value)
