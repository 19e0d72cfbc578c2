"""The statements abflow runs for one experiment, built from the canonical files in sql/queries/.

A plan is a list of `dialects.Statement`: the stages (analysed units, their segments, the metric
definitions) that later statements read, then the statements whose rows come back: the
sufficient statistics and the exposure summary. Every executor (PostgreSQL, DuckDB, Spark) runs
the same plan rendered for its dialect, and `abflow sql` prints it for any dialect. Pure: no
connection, no driver.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlglot import exp

from abflow.bandit_periods import period_segment
from abflow.definitions import Experiment
from abflow.warehouse.dialects import ParamTable, Statement, canonical, with_ctes

DIMENSION_TEMPLATE = "DIMENSION"

METRIC_DEF_COLUMNS: tuple[tuple[str, str], ...] = (
    ("metric_id", "integer"),
    ("metric_key", "text"),
    ("kind", "text"),
    ("num_event", "text"),
    ("num_agg", "text"),
    ("den_event", "text"),
    ("den_agg", "text"),
    ("window_seconds", "bigint"),
)


PERIOD_COLUMNS: tuple[tuple[str, str], ...] = (
    ("period_label", "text"),
    ("period_start", "timestamptz"),
    ("period_end", "timestamptz"),
)
def periods_table(starts: Sequence[datetime]) -> ParamTable:
    """Allocation periods as bound values: [start_i, start_{i+1}), the last one open-ended."""
    ordered = sorted(starts)
    rows = tuple(
        (period_segment(i), start, ordered[i] if i < len(ordered) else None)
        for i, start in enumerate(ordered, start=1)
    )
    return ParamTable("bandit_periods", PERIOD_COLUMNS, rows)


def lookback_days(experiment: Experiment) -> int:
    """The CUPED lookback in days (0 without CUPED)."""
    return experiment.analysis.cuped.lookback_days if experiment.analysis.cuped else 0


def analysis_end(experiment: Experiment, as_of: datetime) -> datetime:
    """Last instant analysed: as_of, capped at the experiment's end."""
    return min(as_of, experiment.end_at) if experiment.end_at else as_of


# Event values outside [-VALUE_LIMIT, VALUE_LIMIT] (and NaN, ±Infinity) are bad rows: the metric
# SQL reads them as missing (their squares would overflow a sum) and a critical check names them.
VALUE_LIMIT = 1e12


def analysis_values(experiment: Experiment, as_of: datetime) -> dict[str, Any]:
    """Values of the placeholders the analysis statements use."""
    return {
        "experiment_key": experiment.key,
        "value_limit": VALUE_LIMIT,
        "start_at": experiment.start_at,
        "as_of": analysis_end(experiment, as_of),
        "variants": [v.key for v in experiment.variants],
        "lookback_days": lookback_days(experiment),
    }


def metric_definitions(experiment: Experiment) -> list[dict[str, Any]]:
    """Metric definitions as plain records (the metric_defs table; the incremental hash)."""
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


def metric_defs_table(experiment: Experiment) -> ParamTable:
    """The metric definitions as a table of bound values (metric_id = 1, 2, ... in order)."""
    rows = tuple(
        (
            i,
            d["metric_key"],
            d["kind"],
            d["num_event"],
            d["num_agg"],
            d["den_event"],
            d["den_agg"],
            None if d["window_hours"] is None else round(float(d["window_hours"]) * 3600),
        )
        for i, d in enumerate(metric_definitions(experiment), start=1)
    )
    return ParamTable("metric_defs", METRIC_DEF_COLUMNS, rows)


def units_statement(values: dict[str, Any]) -> Statement:
    return Statement("units", canonical("queries/units.sql"), relation="abflow_units").bind(values)


def unit_segments_statement(
    experiment: Experiment, values: dict[str, Any], periods: Sequence[datetime] = ()
) -> Statement:
    """unit_segments.sql with its unit_levels template repeated per configured dimension.

    `periods` are the start instants of a bandit's allocation periods (empty: no period labels).
    """
    query = canonical("queries/unit_segments.sql")
    cte = _cte(query, "unit_levels")
    template = cte.this
    dims = list(experiment.analysis.segments)
    branches: list[exp.Query] = []
    for dim in dims:
        branch = _replace_dimension(template.copy(), dim)
        assert isinstance(branch, exp.Query)
        branches.append(branch)
    if not branches:  # no segments: an empty relation of the same shape, never evaluated
        empty = _replace_dimension(template.copy(), "none")
        assert isinstance(empty, exp.Select)
        branches.append(empty.where(exp.false()))
    body: exp.Query = branches[0]
    for b in branches[1:]:
        body = exp.union(body, b, distinct=False)
    cte.set("this", body)
    st = Statement("unit_segments", query, relation="abflow_unit_segments").bind(values)
    return st.with_tables(periods_table(periods))


def metric_events_statement(experiment: Experiment, values: dict[str, Any]) -> Statement:
    st = Statement(
        "metric_events", canonical("queries/metric_events.sql"), relation="abflow_metric_events"
    )
    return st.bind(values).with_tables(metric_defs_table(experiment))


def metric_stats_statement(values: dict[str, Any]) -> Statement:
    """The full pass: per-unit values (metric_stats.sql) into the shared final step."""
    final = with_ctes(
        canonical("queries/metric_final.sql"),
        [("unit_values", canonical("queries/metric_stats.sql"))],
    )
    return Statement("metric_stats", final).bind(values)


def exposure_statement(values: dict[str, Any]) -> Statement:
    return Statement("exposure_summary", canonical("queries/exposure_summary.sql")).bind(values)


def stage_statements(
    experiment: Experiment, as_of: datetime, periods: Sequence[datetime] = ()
) -> list[Statement]:
    """The stages every statistics statement reads: units, their segments, the metrics.

    `periods`: a bandit's allocation period starts (abflow.warehouse.allocation), which add the
    per-period segments; only the periods that began by the analysed end are bound.
    """
    values = analysis_values(experiment, as_of)
    end = analysis_end(experiment, as_of)
    return [
        units_statement(values),
        unit_segments_statement(experiment, values, [p for p in periods if p <= end]),
        metric_events_statement(experiment, values),
    ]


def analysis_plan(
    experiment: Experiment, as_of: datetime, periods: Sequence[datetime] = ()
) -> list[Statement]:
    """Every statement of one full analysis: stages, sufficient statistics, exposure summary."""
    values = analysis_values(experiment, as_of)
    return [
        *stage_statements(experiment, as_of, periods),
        metric_stats_statement(values),
        exposure_statement(values),
    ]


def _cte(query: exp.Query, name: str) -> exp.CTE:
    for cte in query.find_all(exp.CTE):
        if cte.alias == name:
            return cte
    raise ValueError(f"no CTE {name!r}")


def _replace_dimension(node: exp.Expr, dim: str) -> exp.Expr:
    """Every 'DIMENSION' string literal and JSON path key of the template becomes `dim`."""

    def transform(n: exp.Expr) -> exp.Expr:
        if isinstance(n, exp.Literal) and n.is_string and n.this == DIMENSION_TEMPLATE:
            return exp.Literal.string(dim)
        if isinstance(n, exp.JSONPathKey) and n.this == DIMENSION_TEMPLATE:
            return exp.JSONPathKey(this=dim)
        return n

    return node.transform(transform)
