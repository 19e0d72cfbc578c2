"""The statements abflow runs for one experiment, built from the canonical files in sql/queries/.

A plan is a list of `dialects.Statement`: the stages (analysed units, their segments, the metric
definitions) that later statements read, then the statements whose rows come back: the
sufficient statistics and the exposure summary. Every executor (PostgreSQL, DuckDB, Spark) runs
the same plan rendered for its dialect, and `abflow sql` prints it for any dialect. Pure: no
connection, no driver.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlglot import exp

from abflow.bandit_periods import period_segment
from abflow.cohorts import cohort_values
from abflow.definitions import Capping, EventFilter, Experiment
from abflow.stats.quantile import BOUND_Z
from abflow.warehouse.dialects import (
    ParamTable,
    Statement,
    canonical,
    canonical_block,
    rename_tables,
    with_ctes,
)

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
    ("num_cap_type", "text"),
    ("num_cap_lower", "double precision"),
    ("num_cap_upper", "double precision"),
    ("num_cap_ignore_zeros", "boolean"),
    ("den_cap_type", "text"),
    ("den_cap_lower", "double precision"),
    ("den_cap_upper", "double precision"),
    ("den_cap_ignore_zeros", "boolean"),
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
        # metric_stats.sql aggregates the exposure-age cohorts only when they are analysed
        "exposure_age": 1 if experiment.analysis.exposure_age else 0,
        **cohort_values(),
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
            "num_capping": _capping(m.numerator_capping),
            "den_capping": _capping(m.denominator_capping),
            "num_filter": [f.model_dump(mode="json") for f in m.numerator_filter],
            "den_filter": [f.model_dump(mode="json") for f in m.denominator_filter],
        }
        for m in experiment.metrics
    ]


def _capping(c: Capping | None) -> dict[str, Any] | None:
    return None if c is None else c.model_dump(mode="json")


def _cap_cells(c: dict[str, Any] | None) -> tuple[Any, ...]:
    if c is None:
        return (None, None, None, None)
    return (c["type"], c["lower"], c["upper"], bool(c["ignore_zeros"]))


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
            *_cap_cells(d["num_capping"]),
            *_cap_cells(d["den_capping"]),
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


def unit_values_statement(experiment: Experiment, values: dict[str, Any]) -> Statement:
    """The one pass over events: per-unit values (metric_stats.sql), materialised as a stage.

    A stage, so that the final step can read the per-unit values several times (percentile caps
    over units, then capped and uncapped sums) on every engine without reading events again.
    """
    st = Statement(
        "unit_values", canonical("queries/metric_stats.sql"), relation="abflow_unit_values"
    )
    st.query = prune_aggregates(st.query, experiment)
    return with_event_filters(st, experiment).bind(values)


def final_statement(values: dict[str, Any]) -> Statement:
    """Sufficient statistics (capped and uncapped) from abflow_unit_values (metric_final.sql)."""
    return Statement("metric_stats", canonical("queries/metric_final.sql")).bind(values)


def metric_stats_statement(
    values: dict[str, Any], experiment: Experiment | None = None
) -> Statement:
    """The full pass as one statement (per-unit values as a CTE), for EXPLAIN and benchmarks."""
    unit_values = Statement("unit_values", canonical("queries/metric_stats.sql"))
    if experiment is not None:
        unit_values.query = prune_aggregates(unit_values.query, experiment)
        unit_values = with_event_filters(unit_values, experiment)
    else:
        unit_values.query = unit_values.query.transform(
            lambda n: exp.true()
            if isinstance(n, exp.Anonymous) and n.name.lower() == FILTER_MARKER
            else n
        )
    assert isinstance(unit_values.query, exp.Query)
    final = with_ctes(
        canonical("queries/metric_final.sql"), [("abflow_unit_values", unit_values.query)]
    )
    st = Statement("metric_stats", final, dict(unit_values.params))
    return st.bind(values)


# An aggregate of metric_stats.sql's unit_metric_aggregates: side (num, den, pre, den_pre, or an
# exposure-age cohort's ck_num / ck_den) and what it aggregates
_AGGREGATE = re.compile(
    r"^(c[0-3]_num|c[0-3]_den|num|den|pre|den_pre)_(count|value_count|sum|mean|max)$"
)
# the metric aggregations (y_agg, x_agg, c_agg, d_agg of metric_events.sql) each aggregate serves
_SERVES = {
    "count": {"any", "count"},
    "value_count": {"mean"},
    "sum": {"sum"},
    "mean": {"mean"},
    "max": {"max"},
}


def metric_aggregations(experiment: Experiment) -> dict[str, set[str]]:
    """The aggregations of y, x, c and d the experiment's metrics use (as metric_events.sql)."""
    lookback = lookback_days(experiment) > 0
    used: dict[str, set[str]] = {"y": set(), "x": set(), "c": set(), "d": set()}
    for m in experiment.metrics:
        y_agg = "any" if m.kind == "proportion" else m.numerator_agg
        used["y"].add(y_agg)
        if m.kind == "ratio" and m.denominator_agg:
            used["x"].add(m.denominator_agg)
            if lookback:
                used["d"].add(m.denominator_agg)
        if lookback and m.kind != "quantile":
            used["c"].add(y_agg)
    return used


def prune_aggregates(
    query: exp.Expr,
    experiment: Experiment,
    cte: str = "unit_metric_aggregates",
    *,
    keep_counts: bool = False,
) -> exp.Expr:
    """The per-unit aggregation with the aggregates no metric of the experiment reads pruned.

    Every aggregate is evaluated for every event row, and one GROUP BY serves all metrics, so
    the aggregates no metric aggregation (nor the exposure-age cohorts, when they are not
    analysed) picks cost time for nothing: a pruned count or sum becomes 0, a mean or max NULL,
    and the metric's CASE never reads them. A sum also serves a mean where the CTE has no avg of
    that side (mean = sum / count of values). `keep_counts` keeps every count that can be
    non-zero (the incremental partials: the seal step keeps the rows with a non-zero count).
    Denominator counts are 0 anyway without a ratio metric, and are pruned even then.
    """
    used = metric_aggregations(experiment)
    side_of = {"num": "y", "den": "x", "pre": "c", "den_pre": "d"}
    assert isinstance(query, exp.Query)
    body = _cte(query, cte).this
    assert isinstance(body, exp.Select)
    names = {p.alias for p in body.expressions if isinstance(p, exp.Alias)}
    for projection in body.expressions:
        if not isinstance(projection, exp.Alias):
            continue
        name = projection.alias
        if name == "c0_rows":
            needed = bool(experiment.analysis.exposure_age)
        else:
            match = _AGGREGATE.match(name)
            if match is None:
                continue
            side, what = match.groups()
            cohort = side.startswith("c") and side[1].isdigit()
            var = side_of[side.split("_", 1)[1] if cohort else side]
            mean_from_sum = what == "sum" and f"{side}_mean" not in names
            needed = bool(used[var] & (_SERVES[what] | ({"mean"} if mean_from_sum else set())))
            # counts that can be non-zero: every numerator-side one, denominator ones only where
            # a ratio metric reads a denominator
            nonzero_count = what == "count" and (var in ("y", "c") or bool(used["x"]))
            if cohort:
                # a cohort's counts also say whether the unit has a row in it (in_k)
                needed = bool(experiment.analysis.exposure_age) and (needed or nonzero_count)
            elif keep_counts:
                needed = needed or nonzero_count
        if not needed:
            if name.endswith(("count", "rows")):
                projection.set("this", exp.cast(exp.Literal.number(0), "bigint"))
            elif name.endswith("sum"):  # the partials' sums are NOT NULL
                projection.set("this", exp.cast(exp.Literal.number(0), "double precision"))
            else:
                projection.set("this", exp.cast(exp.null(), "double precision"))
    return query


def metric_stats_statements(experiment: Experiment, values: dict[str, Any]) -> list[Statement]:
    """The full pass: per-unit values, then the shared final step."""
    return [unit_values_statement(experiment, values), final_statement(values)]


FILTER_MARKER = "abflow_event_filter"
PROPERTY_TEMPLATE = "PROPERTY"
# numeric comparison operators of the YAML and their sqlglot nodes
_COMPARE: dict[str, type[exp.Binary]] = {
    "=": exp.EQ,
    "!=": exp.NEQ,
    "<": exp.LT,
    "<=": exp.LTE,
    ">": exp.GT,
    ">=": exp.GTE,
}


def with_event_filters(st: Statement, experiment: Experiment) -> Statement:
    """Replace every abflow_event_filter(metric_id, side, properties) call with the predicate.

    The predicate is `CASE metric_id WHEN 1 THEN <metric 1's conditions> ... ELSE TRUE END`
    (TRUE alone when no metric filters that side). Values are placeholders whose values go to
    the statement's parameters; property names are literal JSON path keys (validated keys).
    """

    def transform(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Anonymous) and node.name.lower() == FILTER_MARKER:
            metric_col, side, properties = node.expressions
            return _filter_predicate(experiment, metric_col, side.name, properties, st.params)
        return node

    st.query = st.query.transform(transform)
    return st


def _filter_predicate(
    experiment: Experiment,
    metric_col: exp.Expr,
    side: str,
    properties: exp.Expr,
    params: dict[str, Any],
) -> exp.Expr:
    ifs = []
    for metric_id, m in enumerate(experiment.metrics, start=1):
        filters = m.numerator_filter if side == "num" else m.denominator_filter
        if not filters:
            continue
        conds = [
            _condition(f, properties, params, f"filter_{metric_id}_{side}_{i}")
            for i, f in enumerate(filters, start=1)
        ]
        ifs.append(exp.If(this=exp.Literal.number(metric_id), true=exp.and_(*conds)))
    if not ifs:
        return exp.true()
    return exp.Case(this=metric_col.copy(), ifs=ifs, default=exp.true())


def _condition(
    f: EventFilter, properties: exp.Expr, params: dict[str, Any], prefix: str
) -> exp.Expr:
    """One filter as a condition on the events' properties column."""
    block = "number_value" if f.numeric and f.op != "exists" else "text_value"
    template = canonical_block("queries/event_filter.sql", block)
    assert isinstance(template, exp.Select)
    value = _property_expr(template.selects[0], f.property, properties)
    if f.op == "exists":
        return exp.Not(this=exp.Is(this=value, expression=exp.null()))
    names = []
    for j, v in enumerate(f.bound_values, start=1):
        names.append(f"{prefix}_{j}")
        params[names[-1]] = v
    holders = [exp.Placeholder(this=n) for n in names]
    if f.op in ("in", "not_in"):
        cond: exp.Expr = exp.In(this=value, expressions=holders)
        # NOT IN: a missing property stays unknown (no match), as for every operator
        return exp.Not(this=cond) if f.op == "not_in" else cond
    return _COMPARE[f.op](this=value, expression=holders[0])


def _property_expr(template: exp.Expr, name: str, properties: exp.Expr) -> exp.Expr:
    """The template with its JSON path key set to `name` and e.properties to `properties`."""

    def transform(n: exp.Expr) -> exp.Expr:
        if isinstance(n, exp.JSONPathKey) and n.this == PROPERTY_TEMPLATE:
            return exp.JSONPathKey(this=name)
        if isinstance(n, exp.Column) and n.name == "properties":
            return properties.copy()
        return n

    return template.copy().transform(transform)


QUANTILE_DEF_COLUMNS: tuple[tuple[str, str], ...] = (
    ("metric_id", "integer"),
    ("metric_key", "text"),
    ("level", "text"),
    ("nu", "double precision"),
    ("zero_fill", "integer"),
)


def quantile_defs_table(experiment: Experiment) -> ParamTable:
    """The quantile metrics as bound values (metric_id as in metric_defs)."""
    rows = tuple(
        (i, m.key, m.level, m.quantile, 1 if m.numerator_agg in ("sum", "count") else 0)
        for i, m in enumerate(experiment.metrics, start=1)
        if m.kind == "quantile"
    )
    return ParamTable("quantile_defs", QUANTILE_DEF_COLUMNS, rows)


def has_quantiles(experiment: Experiment) -> bool:
    """Whether the experiment has quantile metrics (the metric_quantiles statement runs)."""
    return any(m.kind == "quantile" for m in experiment.metrics)


def has_event_quantiles(experiment: Experiment) -> bool:
    """Whether a quantile metric is over events (its statement scans the events again)."""
    return any(m.kind == "quantile" and m.level == "event" for m in experiment.metrics)


def quantile_statement(experiment: Experiment, values: dict[str, Any]) -> Statement:
    """Order statistics of the quantile metrics (metric_quantiles.sql).

    Unit-level quantiles read the per-unit values of the one pass (the abflow_unit_values
    stage). Event-level quantiles need each post-exposure event value, which no per-unit stage
    keeps: for them alone the canonical scan of metric_stats.sql runs again, restricted to the
    event-level quantile metrics' reads (and removed from the plan when there are none).
    """
    defs = quantile_defs_table(experiment)
    per_event = Statement("per_event", canonical("queries/metric_stats.sql"))
    per_event = with_event_filters(per_event, experiment)
    assert isinstance(per_event.query, exp.Query)
    scan = _cte(per_event.query, "unit_metric_events").this
    assert isinstance(scan, exp.Select)
    event_ids = [row[0] for row in defs.rows if row[2] == "event"]
    if event_ids:
        scan.where(
            exp.In(
                this=exp.column("metric_id", table="m"),
                expressions=[exp.Placeholder(this="quantile_metric_ids")],
            ),
            copy=False,
        )
    else:  # a constant false: the engines plan no scan at all
        scan.where(exp.false(), copy=False)
    phased = _cte(per_event.query, "phased_events").this
    assert isinstance(phased, exp.Query)
    events = (
        exp.select("*")
        .from_("phased_events")
        .with_("unit_metric_events", as_=scan)
        .with_("phased_events", as_=phased)
    )
    query = with_ctes(canonical("queries/metric_quantiles.sql"), [("quantile_events", events)])
    st = Statement("metric_quantiles", query, dict(per_event.params)).with_tables(defs)
    # the events' exposure-age cohorts are of no use to the order statistics
    return st.bind(
        {**values, "exposure_age": 0, "quantile_metric_ids": event_ids or [0], "bound_z": BOUND_Z}
    )


def exposure_age_statement(
    experiment: Experiment, values: dict[str, Any], *, per_unit: bool | None = None
) -> Statement:
    """Sufficient statistics by week since first exposure (exposure_age.sql + metric_final.sql).

    Reads the cohort columns of the abflow_unit_values stage (the one pass over events, or the
    incremental refresh's merged partials), no events; rows come back as SufficientStats whose
    segment is '@exposure_age=<cohort>'. `per_unit`: run the shared final step over one
    pseudo-unit per (unit, cohort), which capped metrics need (their caps clamp per-unit
    values); None: only when a metric is capped, else the cohort sums are aggregated straight
    from the stage (same numbers, 1.29 s -> 0.54 s at 1M benchmark events on PostgreSQL).
    (Materialising the pseudo-units and their values as stages first was measured no faster at
    1M events on PostgreSQL: 1.27 s against 1.30 s.)
    """
    if per_unit is None:
        per_unit = any(m.capped for m in experiment.metrics)
    if not per_unit:
        return _exposure_age_sums_statement(values)
    final = rename_tables(
        canonical("queries/metric_final.sql"),
        {"abflow_unit_segments": "exposure_age_units", "abflow_unit_values": "exposure_age_values"},
    )
    # the pseudo-units are in no 'all' segment: only the branch through their segments counts
    both = _cte(final, "segment_values").this
    assert isinstance(both, exp.Union)
    _cte(final, "segment_values").set("this", both.expression)
    values_block = canonical_block("queries/exposure_age.sql", "values")
    units_block = canonical_block("queries/exposure_age.sql", "units")
    assert isinstance(values_block, exp.Query) and isinstance(units_block, exp.Query)
    query = with_ctes(
        final,
        [
            _exposure_age_cohorts(),
            ("exposure_age_values", values_block),
            ("exposure_age_units", units_block),
        ],
    )
    return Statement("exposure_age_stats", query).bind(values)


def _exposure_age_cohorts() -> tuple[str, exp.Query]:
    """The cohorts' first days and segments, the CTE exposure_age.sql's blocks read."""
    block = canonical_block("queries/exposure_age.sql", "cohorts")
    assert isinstance(block, exp.Query)
    return "exposure_age_cohorts", block


def _exposure_age_sums_statement(values: dict[str, Any]) -> Statement:
    """The cohort rows without pseudo-units: metric_final.sql with its value_sums and exposed
    CTEs replaced by exposure_age.sql's blocks (no metric capped: no per-unit values needed)."""
    final = canonical("queries/metric_final.sql")
    for name in ("value_sums", "exposed"):
        block = canonical_block("queries/exposure_age.sql", name)
        assert isinstance(block, exp.Query)
        _cte(final, name).set("this", block)
    sums = canonical_block("queries/exposure_age.sql", "sums")
    assert isinstance(sums, exp.Query)
    query = with_ctes(final, [_exposure_age_cohorts(), ("exposure_age_sums", sums)])
    return Statement("exposure_age_stats", query).bind(values)


def extra_statements(experiment: Experiment, values: dict[str, Any]) -> list[Statement]:
    """Quantile order statistics and exposure-age cohorts, where the experiment has them."""
    out: list[Statement] = []
    if has_quantiles(experiment):
        out.append(quantile_statement(experiment, values))
    if experiment.analysis.exposure_age:
        out.append(exposure_age_statement(experiment, values))
    return out


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
        *metric_stats_statements(experiment, values),
        *extra_statements(experiment, values),
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
