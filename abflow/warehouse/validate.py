"""Data-quality validation on PostgreSQL without importing Great Expectations (SPEC §5).

The suites in `expectations/` stay the one declarative definition of "valid". On PostgreSQL a
run evaluates them as SQL (abflow.warehouse.sql_checks: one aggregate statement per suite, the
same code DuckDB and Spark use) and then, only for the expectations that failed, reads up to
five offending values from the same GX query assets (abflow.warehouse.quality) so the outcomes
carry GX's samples. Importing GX costs ~3 s per process and its validations ran several metric
queries per suite over a temporary copy of the events (benchmarks/README.md); GX itself still
runs when its Data Docs are asked for (ABFLOW_GX_DATA_DOCS_DIR), see `validate_postgres`.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, cast

import psycopg
from psycopg import sql
from sqlalchemy import Connection

from abflow.definitions import Experiment
from abflow.results import CheckOutcome
from abflow.warehouse import quality, sql_checks
from abflow.warehouse.engines import PostgresExecutor
from abflow.warehouse.extract import default_sources

_EVENTS = "gx_events_"
VALIDATED_BY = "sql"  # the suites of expectations/ evaluated in SQL, not through GX
_SAMPLED = frozenset(
    {
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_null",
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_be_between",
    }
)


def validate_postgres(
    conn: Connection,
    schema: str,
    experiment: Experiment,
    as_of: datetime,
    *,
    assignments_source: str,
    events_source: str,
    previous_units: int | None = None,
    now: datetime | None = None,
    events_from: datetime | None = None,
) -> list[CheckOutcome]:
    """Every expectation of the suites evaluated in PostgreSQL; failures carry a sample.

    Runs in the caller's transaction (one snapshot for the checks and their samples).
    """
    now = now or datetime.now(UTC)
    outcomes = sql_checks.run_sql_checks(
        PostgresExecutor(conn),
        experiment,
        as_of,
        default_sources(assignments_source, events_source),
        previous_units=previous_units,
        now=now,
        events_from=events_from,
    )
    failed = [o for o in outcomes if not o.passed and o.details.get("expectation") in _SAMPLED]
    if events_from is not None:  # an incremental run validated the events its refresh reads
        since = {"events_from": events_from.isoformat()}
        outcomes = [
            replace(o, details={**o.details, **since}) if o.check_name.startswith(_EVENTS) else o
            for o in outcomes
        ]
    if not failed:
        return [_noted(o, []) for o in outcomes]
    assets = _assets(schema, experiment, as_of, now, assignments_source, events_source, events_from)
    suites = _bound_suites(experiment, as_of, now, previous_units)
    configs = {
        quality._check_name(suite, e): (suite, e)
        for suite, expectations in suites.items()
        for e in expectations
    }
    samples: dict[str, list[Any]] = {}
    for outcome in failed:
        suite, config = configs[outcome.check_name]
        if suite in assets:  # variant_stats has no row-level expectations
            samples[outcome.check_name] = _sample(conn, assets[suite], config)
    return [_noted(o, samples.get(o.check_name)) for o in outcomes]


def _noted(outcome: CheckOutcome, sample: list[Any] | None) -> CheckOutcome:
    # No "note": a failed check's note is quoted in the recommendation's rationale, and this one
    # says nothing about the data (the GX path has none either).
    details = {k: v for k, v in outcome.details.items() if k != "note"}
    details["validated_by"] = VALIDATED_BY
    if sample is not None and "sample" in details and details.get("expectation") in _SAMPLED:
        details["sample"] = sample
    return replace(outcome, details=details)


def _bound_suites(
    experiment: Experiment, as_of: datetime, now: datetime, previous_units: int | None
) -> dict[str, list[dict[str, Any]]]:
    params = quality.suite_parameters(experiment, as_of, now, previous_units)
    return {
        name: quality.bind_suite(quality.load_suite(name), params) for name in quality.SUITE_NAMES
    }


def _assets(
    schema: str,
    experiment: Experiment,
    as_of: datetime,
    now: datetime,
    assignments_source: str,
    events_source: str,
    events_from: datetime | None,
) -> dict[str, sql.Composed]:
    """The suites' query assets, exactly as GX validates them (quality.py)."""
    sources = quality.asset_sources(schema, assignments_source, events_source)
    return quality.asset_queries(experiment, as_of, now, sources, events_from)


def _sample(conn: Connection, asset: sql.Composed, config: dict[str, Any]) -> list[Any]:
    """Up to quality.SAMPLE_SIZE distinct offending values of one failed expectation."""
    kind = config["type"]
    kwargs = config.get("kwargs", {})
    column = sql.Identifier("asset", kwargs["column"])
    if kind == "expect_column_values_to_not_be_null":
        return [None]  # what GX lists for missing values
    tests: list[sql.Composable] = [sql.SQL("{} is not null").format(column)]
    if kind == "expect_column_values_to_be_in_set":
        values = kwargs["value_set"]
        if values:
            listed = sql.SQL(", ").join(sql.Literal(v) for v in values)
            tests.append(sql.SQL("{} not in ({})").format(column, listed))
    elif kind == "expect_column_values_to_be_between":
        bounds = []
        if kwargs.get("min_value") is not None:
            bounds.append(sql.SQL("{} < {}").format(column, sql.Literal(kwargs["min_value"])))
        if kwargs.get("max_value") is not None:
            bounds.append(sql.SQL("{} > {}").format(column, sql.Literal(kwargs["max_value"])))
        if bounds:
            tests.append(sql.SQL("({})").format(sql.SQL(" or ").join(bounds)))
    condition = kwargs.get("row_condition")
    if condition:
        listed = sql.SQL(", ").join(sql.Literal(v) for v in condition["parameter"])
        tests.append(
            sql.SQL("{} in ({})").format(
                sql.Identifier("asset", condition["column"]["name"]), listed
            )
        )
    query = sql.SQL("select distinct {col} from ({asset}) as asset where {tests} limit {n}").format(
        col=column, asset=asset, tests=sql.SQL(" and ").join(tests), n=quality.SAMPLE_SIZE
    )
    raw = cast(psycopg.Connection, conn.connection.dbapi_connection)
    with raw.cursor() as cur:
        cur.execute(query.as_string(None).encode(), prepare=False)
        return quality._sample([r[0] for r in cur.fetchall()])
