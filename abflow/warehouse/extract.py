"""Extraction: run the aggregate queries in the warehouse; only sufficient statistics come back.

The statements come from abflow.warehouse.plan (one canonical source, rendered per dialect);
this module runs them and turns their rows into records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from psycopg import sql
from sqlalchemy import Connection

from abflow.definitions import Experiment
from abflow.results import CAP_FIELDS, ExposureSummary, SufficientStats
from abflow.warehouse import plan
from abflow.warehouse.dialects import Source
from abflow.warehouse.engines import Executor, PostgresExecutor, execute_plan

# Event values outside [-VALUE_LIMIT, VALUE_LIMIT] (and NaN, ±Infinity) are bad rows: the metric
# SQL reads them as missing, so sums of squares cannot overflow double precision (~1e154 would),
# and the critical GX check gx_events_value_finite_in_range names them (the run is unhealthy).
VALUE_LIMIT = plan.VALUE_LIMIT


def relation(name: str) -> sql.Composable:
    """Quote a possibly schema-qualified relation name ('view' or 'schema.view') as identifiers."""
    parts = [p for p in name.split(".") if p]
    if not 1 <= len(parts) <= 2:
        raise ValueError(f"source relation {name!r}: expected 'name' or 'schema.name'")
    return sql.Identifier(*parts)


def metric_definitions(experiment: Experiment) -> list[dict[str, Any]]:
    """Metric definitions as plain records (the metric_defs table; the incremental hash)."""
    return plan.metric_definitions(experiment)


def default_sources(assignments: str, events: str) -> dict[str, Source]:
    """The source relations as `Source`s ('name', 'schema.name' or 'parquet:/path')."""
    return {"assignments": Source.parse(assignments), "events": Source.parse(events)}


def analyse_in_warehouse(
    executor: Executor,
    experiment: Experiment,
    as_of: datetime,
    sources: Mapping[str, Source],
    *,
    stats: bool = True,
    exposure: bool = True,
    periods: Sequence[datetime] = (),
) -> tuple[list[SufficientStats], ExposureSummary | None]:
    """One full analysis on any executed engine: sufficient statistics and exposure summary.

    Runs the statements of `plan.analysis_plan` rendered for the executor's dialect, inside the
    executor's snapshot; only aggregate rows come back. `periods`: a bandit's allocation period
    starts, for the per-period rows ('#period=N' segments).
    """
    if stats:
        statements = plan.analysis_plan(experiment, as_of, periods)
    else:
        statements = [plan.exposure_statement(plan.analysis_values(experiment, as_of))]
    if not exposure:
        statements = [s for s in statements if s.name != "exposure_summary"]
    rows = execute_plan(executor, statements, sources)
    records = stats_with_extras(rows) if stats else []
    summary = exposure_from_rows(experiment, rows["exposure_summary"]) if exposure else None
    return records, summary


def fetch_sufficient_stats(
    conn: Connection,
    experiment: Experiment,
    as_of: datetime,
    *,
    assignments: str,
    events: str,
    periods: Sequence[datetime] = (),
) -> list[SufficientStats]:
    """One pass over the experiment's events -> sufficient statistics per metric/variant/segment.

    PostgreSQL, on a SQLAlchemy connection. Must run inside a transaction: the unit tables are
    temporary and dropped on commit.
    """
    stats, _ = analyse_in_warehouse(
        PostgresExecutor(conn),
        experiment,
        as_of,
        default_sources(assignments, events),
        exposure=False,
        periods=periods,
    )
    return stats


def build_analysis_tables(
    conn: Connection, experiment: Experiment, as_of: datetime, *, assignments: str
) -> None:
    """Create and ANALYZE the temporary stage tables (units, segments, metrics) on PostgreSQL.

    Real row counts matter: without them the planner guessed a few dozen units or metric rows
    and chose nested loops or sorts that cost 10x (see benchmarks/README.md).
    """
    sources = {"assignments": Source.parse(assignments), "events": Source.parse("events")}
    execute_plan(PostgresExecutor(conn), plan.stage_statements(experiment, as_of), sources)


def stats_from_rows(rows: list[dict[str, Any]]) -> list[SufficientStats]:
    """metric_final.sql's rows as records: a capped metric's capped row carries its raw one."""
    raw = {
        (r["metric_key"], r["variant_key"], r["segment"]): stats_from_row(r)
        for r in rows
        if not r["capped"]
    }
    for r in rows:
        if r["capped"]:
            key = (r["metric_key"], r["variant_key"], r["segment"])
            raw[key] = replace(stats_from_row(r), uncapped=raw.get(key))
    return list(raw.values())


def stats_from_row(r: dict[str, Any]) -> SufficientStats:
    """One row of metric_final.sql as a SufficientStats record (capped or raw sums)."""
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
        denominator_covariate_sum=_opt(r["denominator_covariate_sum"]),
        denominator_covariate_sum_squares=_opt(r["denominator_covariate_sum_squares"]),
        denominator_covariate_sum_products=_opt(r["denominator_covariate_sum_products"]),
        covariate_cross_sum_products=_opt(r["covariate_cross_sum_products"]),
        numerator_denominator_covariate_sum_products=_opt(
            r["numerator_denominator_covariate_sum_products"]
        ),
        covariate_denominator_sum_products=_opt(r["covariate_denominator_sum_products"]),
        capped=bool(r["capped"]),
        **{k: _opt(r[k]) for k in CAP_FIELDS},  # type: ignore[arg-type]
    )


def stats_with_extras(rows: Mapping[str, list[dict[str, Any]]]) -> list[SufficientStats]:
    """metric_stats rows with the quantile order statistics merged in, then the cohort rows."""
    records = stats_from_rows(rows["metric_stats"])
    quantiles = {
        (r["metric_key"], r["variant_key"], r["segment"]): r
        for r in rows.get("metric_quantiles", [])
    }
    if quantiles:
        records = [
            with_quantile(s, quantiles.get((s.metric_key, s.variant_key, s.segment)))
            for s in records
        ]
    records += stats_from_rows(rows.get("exposure_age_stats", []))
    return records


def with_quantile(s: SufficientStats, r: dict[str, Any] | None) -> SufficientStats:
    """One arm's sufficient statistics with its quantile row (None: no observations)."""
    if r is None:
        return s
    return replace(
        s,
        quantile_n=int(r["quantile_n"]),
        quantile=_opt(r["quantile"]),
        quantile_lower=_opt(r["quantile_lower"]),
        quantile_upper=_opt(r["quantile_upper"]),
        n_clusters=None if r["n_clusters"] is None else int(r["n_clusters"]),
        below_sum=_opt(r["below_sum"]),
        below_sum_squares=_opt(r["below_sum_squares"]),
        events_sum=_opt(r["events_sum"]),
        events_sum_squares=_opt(r["events_sum_squares"]),
        below_events_sum_products=_opt(r["below_events_sum_products"]),
    )


def fetch_exposure_summary(
    conn: Connection, experiment: Experiment, as_of: datetime, *, assignments: str
) -> ExposureSummary:
    """Units per variant, multiple exposures and unknown variants (PostgreSQL connection)."""
    values = plan.analysis_values(experiment, as_of)
    rows = execute_plan(
        PostgresExecutor(conn),
        [plan.exposure_statement(values)],
        {"assignments": Source.parse(assignments), "events": Source.parse("events")},
    )
    return exposure_from_rows(experiment, rows["exposure_summary"])


def exposure_from_rows(experiment: Experiment, rows: list[dict[str, Any]]) -> ExposureSummary:
    """exposure_summary.sql's rows as an ExposureSummary."""
    by_variant = {v.key: 0 for v in experiment.variants}
    unknown: dict[str, int] = {}
    multiple = 0
    sample_multiple: tuple[str, ...] = ()
    firsts, lasts = [], []
    for r in rows:
        units = int(r["units"])
        if r["multiple"]:
            multiple += units
            sample = (r[f"sample_{i}"] for i in range(1, 6))
            sample_multiple = tuple(u for u in sample if u is not None)
        elif r["unknown"]:
            unknown[r["variant_key"]] = units
        else:
            by_variant[r["variant_key"]] = units
            firsts.append(r["first_exposed_at"])
            lasts.append(r["last_exposed_at"])
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
