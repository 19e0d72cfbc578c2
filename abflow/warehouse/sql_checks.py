"""The data-quality suites of `expectations/` as SQL, for engines Great Expectations cannot reach.

GX 1.24 validates inside PostgreSQL through its SQL datasource (abflow.warehouse.quality), but
has no working DuckDB path (duckdb-engine fails with SQLAlchemy 2.1) and validates Spark only
through DataFrames. On DuckDB and Spark abflow therefore evaluates *the same suite files* in
SQL: each suite's rows (sql/queries/check_assets.sql) become a CTE `asset`, each expectation one
or a few aggregates over it, and the whole suite one statement rendered for the warehouse's
dialect. The outcomes carry the same check names, severities, observed values and thresholds
as the GX path; the samples of offending values are not collected (details say so).

Supported expectation types: exactly those the suites use (table row count, not null, null, in
set, between, distinct values contain set, column sum); any other type fails loudly.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlglot import exp

from abflow.definitions import Experiment
from abflow.results import CheckOutcome
from abflow.warehouse.dialects import Source, Statement, canonical_block
from abflow.warehouse.engines import Executor, execute_plan
from abflow.warehouse.quality import (
    ASSETS,
    SUITE_NAMES,
    _check_name,
    _severity,
    asset_values,
    bind_suite,
    load_suite,
    suite_parameters,
)

NOTE = "validated in SQL on this engine (no GX datasource); offending rows are not sampled"


RUN_TIME = "(the wall-clock time of the run)"


def run_sql_checks(
    executor: Executor,
    experiment: Experiment,
    as_of: datetime,
    sources: Mapping[str, Source],
    *,
    previous_units: int | None = None,
    now: datetime | None = None,
    events_from: datetime | None = None,
) -> list[CheckOutcome]:
    """Every expectation of the suites, evaluated in the warehouse; one outcome per check.

    `events_from` narrows the events suite to the events an incremental refresh reads.
    """
    now = now or datetime.now(UTC)
    suites = _suites(experiment, as_of, now, previous_units)
    statements = check_statements(
        experiment, as_of, now=now, previous_units=previous_units, events_from=events_from
    )
    rows = execute_plan(executor, statements, sources)
    outcomes: list[CheckOutcome] = []
    for name, expectations in suites.items():
        row = rows[f"check_{name}"][0]
        outcomes.extend(_outcome(name, i, e, row) for i, e in enumerate(expectations))
    return outcomes


def _suites(
    experiment: Experiment, as_of: datetime, now: Any, previous_units: int | None
) -> dict[str, list[dict[str, Any]]]:
    params = suite_parameters(experiment, as_of, now, previous_units)
    return {name: bind_suite(load_suite(name), params) for name in SUITE_NAMES}


def check_statements(
    experiment: Experiment,
    as_of: datetime,
    *,
    now: datetime | None,
    previous_units: int | None = None,
    events_from: datetime | None = None,
) -> list[Statement]:
    """One aggregate statement per suite (`now` None: shown as the time of the run)."""
    current: Any = now if now is not None else RUN_TIME
    values = asset_values(experiment, as_of, current, events_from)
    statements = []
    for name, expectations in _suites(experiment, as_of, current, previous_units).items():
        builder = _SuiteQuery(name)
        for i, e in enumerate(expectations):
            builder.add(i, e)
        statements.append(builder.statement(values))
    return statements


class _SuiteQuery:
    """One aggregate statement over a suite's asset, a few columns per expectation."""

    def __init__(self, suite: str) -> None:
        self.suite = suite
        self.columns: list[exp.Expr] = []
        self.params: dict[str, Any] = {}

    def _param(self, name: str, value: Any) -> exp.Expr:
        self.params[name] = value
        return exp.Placeholder(this=name)

    def _col(self, alias: str, expression: exp.Expr) -> None:
        self.columns.append(exp.alias_(expression, alias))

    def _count(self, condition: exp.Expr | None) -> exp.Expr:
        star = exp.Count(this=exp.Star())
        return (
            star
            if condition is None
            else exp.Filter(this=star, expression=exp.Where(this=condition))
        )

    def _condition(self, i: int, kwargs: Mapping[str, Any]) -> exp.Expr | None:
        cond = kwargs.get("row_condition")
        if not cond:
            return None
        if not isinstance(cond, Mapping) or cond.get("operator") != "IN":
            raise ValueError(f"{self.suite}: unsupported row_condition {cond!r}")
        values = list(cond["parameter"])
        column = exp.column(cond["column"]["name"])
        if not values:
            return exp.false()
        names = [f"e{i}_cond_{j}" for j in range(len(values))]
        for n, v in zip(names, values, strict=True):
            self.params[n] = v
        return exp.In(this=column, expressions=[exp.Placeholder(this=n) for n in names])

    def add(self, i: int, expectation: Mapping[str, Any]) -> None:
        kind = expectation["type"]
        kwargs = expectation.get("kwargs", {})
        cond = self._condition(i, kwargs)
        column = exp.column(kwargs["column"]) if "column" in kwargs else None

        def both(*parts: exp.Expr | None) -> exp.Expr | None:
            kept = [p for p in parts if p is not None]
            if not kept:
                return None
            out = kept[0]
            for p in kept[1:]:
                out = exp.and_(out, p)
            return out

        if kind == "expect_table_row_count_to_be_between":
            self._col(f"e{i}_n", self._count(cond))
        elif kind in ("expect_column_values_to_not_be_null", "expect_column_values_to_be_null"):
            assert column is not None
            is_null = exp.Is(this=column, expression=exp.Null())
            bad: exp.Expr = is_null if kind.endswith("not_be_null") else exp.Not(this=is_null)
            self._col(f"e{i}_n", self._count(cond))
            self._col(f"e{i}_missing", exp.Literal.number(0))
            self._col(f"e{i}_bad", self._count(both(cond, bad)))
        elif kind in ("expect_column_values_to_be_in_set", "expect_column_values_to_be_between"):
            assert column is not None
            null = exp.Is(this=column, expression=exp.Null())
            if kind.endswith("in_set"):
                names = [f"e{i}_set_{j}" for j in range(len(kwargs["value_set"]))]
                for n, v in zip(names, kwargs["value_set"], strict=True):
                    self.params[n] = v
                inside: exp.Expr = (
                    exp.In(this=column.copy(), expressions=[exp.Placeholder(this=n) for n in names])
                    if names
                    else exp.false()
                )
                bad = exp.Not(this=inside)
            else:
                tests: list[exp.Expr] = []
                if kwargs.get("min_value") is not None:
                    tests.append(
                        exp.LT(
                            this=column.copy(),
                            expression=self._param(f"e{i}_min", kwargs["min_value"]),
                        )
                    )
                if kwargs.get("max_value") is not None:
                    tests.append(
                        exp.GT(
                            this=column.copy(),
                            expression=self._param(f"e{i}_max", kwargs["max_value"]),
                        )
                    )
                bad = exp.or_(*tests) if tests else exp.false()
            self._col(f"e{i}_n", self._count(cond))
            self._col(f"e{i}_missing", self._count(both(cond, null)))
            self._col(
                f"e{i}_bad", self._count(both(cond, exp.Not(this=null.copy()), exp.paren(bad)))
            )
        elif kind == "expect_column_distinct_values_to_contain_set":
            assert column is not None
            for j, v in enumerate(kwargs["value_set"]):
                equal = exp.EQ(this=column.copy(), expression=self._param(f"e{i}_want_{j}", v))
                self._col(f"e{i}_has_{j}", self._count(both(cond, equal)))
        elif kind == "expect_column_sum_to_be_between":
            assert column is not None
            self._col(f"e{i}_sum", exp.Sum(this=column.copy()))
        else:
            raise ValueError(f"expectations/{self.suite}.json: {kind} has no SQL form")

    def statement(self, values: Mapping[str, Any]) -> Statement:
        asset = canonical_block(ASSETS, self.suite)
        assert isinstance(asset, exp.Query)
        query = exp.select(*(self.columns or [exp.alias_(exp.Literal.number(1), "empty")]))
        query = query.from_("asset").with_("asset", as_=asset)
        st = Statement(f"check_{self.suite}", query, params=dict(self.params))
        return st.bind(values)


def _outcome(suite: str, i: int, e: Mapping[str, Any], row: Mapping[str, Any]) -> CheckOutcome:
    kind = e["type"]
    kwargs = e.get("kwargs", {})
    name = _check_name(suite, e)
    severity = _severity(e.get("severity"))
    base = {"expectation": kind, "column": kwargs.get("column"), "note": NOTE}
    if kind == "expect_table_row_count_to_be_between":
        n = int(row[f"e{i}_n"])
        lo, hi = kwargs.get("min_value"), kwargs.get("max_value")
        ok = (lo is None or n >= lo) and (hi is None or n <= hi)
        minimum = None if lo is None else float(lo)
        return CheckOutcome(
            name, severity, ok, float(n), minimum, {**base, "observed_value": n, "min_value": lo}
        )
    if kind == "expect_column_distinct_values_to_contain_set":
        missing = [v for j, v in enumerate(kwargs["value_set"]) if int(row[f"e{i}_has_{j}"]) == 0]
        return CheckOutcome(
            name,
            severity,
            not missing,
            float(len(missing)),
            0.0,
            {**base, "unexpected_count": len(missing), "sample": missing[:5]},
        )
    if kind == "expect_column_sum_to_be_between":
        total = row[f"e{i}_sum"]
        observed = None if total is None else float(total)
        lo, hi = kwargs.get("min_value"), kwargs.get("max_value")
        ok = (
            observed is not None
            and (lo is None or observed >= lo)
            and (hi is None or observed <= hi)
        )
        return CheckOutcome(
            name,
            severity,
            ok,
            observed,
            None if lo is None else float(lo),
            {**base, "observed_value": observed, "min_value": lo},
        )
    elements = int(row[f"e{i}_n"])
    considered = elements - int(row[f"e{i}_missing"])
    unexpected = int(row[f"e{i}_bad"])
    mostly = float(kwargs.get("mostly", 1.0))
    ok = considered == 0 or (considered - unexpected) / considered >= mostly - 1e-12
    allowed = round((1.0 - mostly) * considered, 6)
    details = {
        **base,
        "unexpected_count": unexpected,
        "element_count": elements,
        "mostly": mostly,
        "sample": [],
    }
    return CheckOutcome(name, severity, ok, float(unexpected), allowed, details)
