"""Data-quality gate: GX suites from `expectations/`, validated inside PostgreSQL (SPEC §5).

Each suite is a hand-written JSON file validated against one *query asset*: the suite's block of
sql/queries/check_assets.sql (the rows the SQL checks of every engine aggregate too) rendered for
PostgreSQL with its values as psycopg literals, so GX computes every metric inside the warehouse
and only aggregates and a few sample values come back. Experiment-specific values
are written in the suites as `{"$PARAMETER": name}` and bound here, in Python, before the suite is
built (GX does not evaluate `$PARAMETER` inside a `row_condition`: it silently matches no rows).
An expectation whose parameter is None (no previous run, no value metric) is skipped.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from psycopg import sql

from abflow.definitions import Experiment
from abflow.package_data import package_path
from abflow.redact import one_line, redact
from abflow.results import CheckOutcome, Severity
from abflow.settings import normalize_database_url
from abflow.warehouse.data_docs import write_data_docs
from abflow.warehouse.dialects import Source, Statement, canonical_block, render_plan
from abflow.warehouse.extract import VALUE_LIMIT, relation
from abflow.warehouse.plan import analysis_end, lookback_days

if TYPE_CHECKING:
    from great_expectations.core import ExpectationSuiteValidationResult
    from great_expectations.core.expectation_validation_result import (
        ExpectationValidationResult,
    )
    from great_expectations.datasource.fluent import SQLDatasource

SUITES_DIR = package_path("expectations")
SUITE_NAMES = ("assignments", "events", "variant_stats")
# The rows each suite validates, one block per suite (the SQL checks and GX read the same text).
ASSETS = "queries/check_assets.sql"
VALUE_AGGS = frozenset({"sum", "mean", "max"})
DROP_RATIO = 0.5
SAMPLE_SIZE = 5
RESULT_FORMAT: dict[str, Any] = {
    "result_format": "SUMMARY",
    "partial_unexpected_count": SAMPLE_SIZE,
}
_URL_VARIABLE = "abflow_gx_connection_string"
# GX wraps a query asset in SQLAlchemy text() and re-compiles it: ":name" inside a quoted literal
# silently becomes NULL and "%" is doubled twice. Literals must contain neither.
_BIND_PARAM = re.compile(r"(?<![:\w\\]):(\w+)(?![:\w])")
_UNSAFE_CHARS = frozenset(":%\\")
_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


class _Unbound(Exception):
    """A `$PARAMETER` is None for this run: the expectation does not apply."""


# --- public entry point -------------------------------------------------------------------------


def run_expectations(
    connection_string: str,
    schema: str,
    experiment: Experiment,
    as_of: datetime,
    *,
    assignments_source: str = "assignments",
    events_source: str = "events",
    previous_units: int | None = None,
    data_docs_dir: Path | None = None,
    events_from: datetime | None = None,
) -> list[CheckOutcome]:
    """Validate the experiment's assignments, events and exposure units; one outcome per check.

    With data_docs_dir, GX's Data Docs of this validation go to `<dir>/<experiment key>/`.
    """
    # GX logs a line per ephemeral context at INFO; our own report lists what matters.
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    now = datetime.now(UTC)
    sources = asset_sources(schema, assignments_source, events_source)
    params = suite_parameters(experiment, as_of, now, previous_units)
    queries = asset_queries(experiment, as_of, now, sources, events_from)
    try:
        datasource = _datasource(connection_string)
    except Exception as exc:  # GX may quote the connection string: never let it out unmasked
        raise RuntimeError(f"cannot open the warehouse for GX: {one_line(exc)}") from None
    outcomes: list[CheckOutcome] = []
    try:
        for name in SUITE_NAMES:
            expectations = bind_suite(load_suite(name), params)
            outcomes.extend(_validate(datasource, name, queries[name], expectations))
        if data_docs_dir is not None:
            write_data_docs(datasource.data_context, Path(data_docs_dir) / experiment.key)
    finally:
        _close(datasource)
    return outcomes


# --- parameters and suites ----------------------------------------------------------------------


def metric_event_names(experiment: Experiment) -> list[str]:
    """Every event name any metric counts (numerators and denominators)."""
    names = {m.numerator_event for m in experiment.metrics}
    names |= {m.denominator_event for m in experiment.metrics if m.denominator_event}
    return sorted(names)


def value_event_names(experiment: Experiment) -> list[str]:
    """Event names whose `value` a metric aggregates with sum, mean or max."""
    names: set[str] = set()
    for m in experiment.metrics:
        if m.numerator_agg in VALUE_AGGS:
            names.add(m.numerator_event)
        if m.denominator_event and m.denominator_agg in VALUE_AGGS:
            names.add(m.denominator_event)
    return sorted(names)


def suite_parameters(
    experiment: Experiment, as_of: datetime, now: datetime, previous_units: int | None
) -> dict[str, Any]:
    """Values for the suites' `$PARAMETER`s (None means: skip the expectations using it)."""
    value_events = value_event_names(experiment)
    return {
        "variants": [v.key for v in experiment.variants],
        "exposed_variants": [v.key for v in experiment.variants if v.weight > 0],
        "start_at": experiment.start_at,
        "window_end": analysis_end(experiment, as_of),
        "now": now,
        "value_events": value_events or None,
        "min_units": None if previous_units is None else math.ceil(DROP_RATIO * previous_units),
    }


def load_suite(name: str) -> dict[str, Any]:
    """Read one suite file from `abflow/expectations/`."""
    data: dict[str, Any] = json.loads((SUITES_DIR / f"{name}.json").read_text(encoding="utf-8"))
    return data


def bind_suite(suite: Mapping[str, Any], params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The suite's expectations with parameters bound; those with an unset parameter dropped."""
    bound: list[dict[str, Any]] = []
    for expectation in suite["expectations"]:
        try:
            bound.append(_bind(expectation, params))
        except _Unbound:
            continue
    return bound


def _bind(node: Any, params: Mapping[str, Any]) -> Any:
    """Replace every {"$PARAMETER": name} in a JSON tree with its value."""
    if isinstance(node, dict):
        if set(node) == {"$PARAMETER"}:
            value = params[node["$PARAMETER"]]
            if value is None:
                raise _Unbound(node["$PARAMETER"])
            return value
        return {k: _bind(v, params) for k, v in node.items()}
    if isinstance(node, list):
        return [_bind(v, params) for v in node]
    return node


# --- query assets -------------------------------------------------------------------------------


def asset_sources(schema: str, assignments: str, events: str) -> dict[str, Source]:
    """The source relations, resolved in `schema` unless already schema-qualified.

    GX connects without abflow's search_path, so its assets name the schema.
    """
    for name in (assignments, events):
        relation(name)  # 'name' or 'schema.name' only, with a clear message otherwise
    return {
        "assignments": Source.parse(assignments, default_schema=schema),
        "events": Source.parse(events, default_schema=schema),
    }


def asset_values(
    experiment: Experiment, as_of: datetime, now: Any, events_from: datetime | None = None
) -> dict[str, Any]:
    """The values of check_assets.sql's placeholders: which rows each suite validates.

    `events_from` narrows the events to those an incremental refresh reads.
    """
    return {
        "experiment_key": experiment.key,
        "as_of": as_of,
        "now": now,
        "start_at": experiment.start_at,
        "window_end": analysis_end(experiment, as_of),
        "value_limit": VALUE_LIMIT,
        "events_from": events_from
        or experiment.start_at - timedelta(days=lookback_days(experiment)),
        "event_names": metric_event_names(experiment),
        "variants": [v.key for v in experiment.variants],
    }


def asset_queries(
    experiment: Experiment,
    as_of: datetime,
    now: datetime,
    sources: Mapping[str, Source],
    events_from: datetime | None = None,
) -> dict[str, sql.Composed]:
    """Each suite's rows as a GX query asset: its check_assets.sql block, values as literals.

    The SQL checks (sql_checks.py) aggregate the same blocks with bound parameters; GX wraps an
    asset in SQLAlchemy text() and re-compiles it, so here every value is a psycopg literal.
    """
    values = asset_values(experiment, as_of, now, events_from)
    statements = [
        Statement(name, canonical_block(ASSETS, name)).bind(values) for name in SUITE_NAMES
    ]
    return {
        r.name: _with_literals(r.sql, r.params)
        for r in render_plan(statements, "postgres", sources)
    }


def _with_literals(text: str, params: Mapping[str, Any]) -> sql.Composed:
    """Rendered PostgreSQL text with each %(name)s placeholder replaced by its value, quoted."""
    pieces: list[sql.Composable] = []
    for i, part in enumerate(_PLACEHOLDER.split(text)):
        if i % 2:  # the placeholder's name
            value = params[part]
            pieces.append(text_literal(value) if isinstance(value, str) else sql.Literal(value))
        elif part:
            pieces.append(sql.SQL(part))
    return sql.Composed(pieces)


def text_literal(value: str) -> sql.Composable:
    """A quoted string literal; hex-encoded when it holds characters GX would corrupt."""
    if _UNSAFE_CHARS.isdisjoint(value):
        return sql.Literal(value)
    encoded = sql.Literal(value.encode("utf-8").hex())
    return sql.SQL("convert_from(decode({}, 'hex'), 'UTF8')").format(encoded)


def render(query: sql.Composed) -> str:
    """The query as text for a GX query asset; refuses text that GX would silently rewrite."""
    text = query.as_string(None)
    if "%" in text or _BIND_PARAM.search(text):
        raise ValueError(f"query asset text would be altered by GX: {text[:200]}")
    return text


# --- Great Expectations -------------------------------------------------------------------------


def _datasource(connection_string: str) -> SQLDatasource:
    """An ephemeral GX context (no progress bars) with one PostgreSQL datasource.

    `create_temp_table` materialises each query asset once per validation (GX otherwise re-runs
    the windowed query inside every metric query).
    """
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    # After the import: GX configures its loggers on import; one INFO line per context is noise.
    for name in ("great_expectations", "great_expectations.data_context.types.base"):
        logging.getLogger(name).setLevel(logging.WARNING)
    url = normalize_database_url(connection_string)
    # Passed as a config variable: GX's DSN validation rejects socket URLs (no host) and the
    # secret stays out of the datasource config.
    context = gx.get_context(mode="ephemeral", runtime_environment={_URL_VARIABLE: url})
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context.data_sources.add_postgres(
        "abflow_warehouse", connection_string="${" + _URL_VARIABLE + "}", create_temp_table=True
    )


def _close(datasource: SQLDatasource) -> None:
    """Close GX's connection pools (its temp tables die with their connection)."""
    datasource.get_execution_engine().close()
    datasource.get_engine().dispose()


def _validate(
    datasource: SQLDatasource, name: str, query: sql.Composed, expectations: list[dict[str, Any]]
) -> list[CheckOutcome]:
    """Run one suite against one query asset; errors become failed outcomes, never exceptions."""
    import great_expectations as gx

    context = datasource.data_context
    assert context is not None
    suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))
    if len(suite.expectations) != len(expectations):
        raise ValueError(f"expectations/{name}.json: an expectation is invalid (see GX log)")
    try:
        asset = datasource.add_query_asset(name, query=render(query))
        batch_definition = asset.add_batch_definition_whole_table("window")
        validation = context.validation_definitions.add(
            gx.ValidationDefinition(name=name, data=batch_definition, suite=suite)
        )
        result: ExpectationSuiteValidationResult = validation.run(result_format=RESULT_FORMAT)
    except Exception as exc:  # a broken source fails its checks, not the run
        message = one_line(exc)
        return [_error_outcome(name, e, message) for e in expectations]
    return [_outcome(name, r) for r in result.results]


def _check_name(suite: str, config: Mapping[str, Any]) -> str:
    """`gx_<suite>_<check>` from the expectation's meta (its type if meta has no check)."""
    meta = config.get("meta") or {}
    return f"gx_{suite}_{meta.get('check') or config['type']}"


def _severity(value: Any) -> Severity:
    """GX severity ('critical' | 'warning' | 'info') as a CheckOutcome severity."""
    return "critical" if str(getattr(value, "value", value)) == "critical" else "warning"


def _error_outcome(suite: str, config: Mapping[str, Any], message: str) -> CheckOutcome:
    """A check that could not be evaluated: failed, critical, with the error in details."""
    return CheckOutcome(
        check_name=_check_name(suite, config),
        severity="critical",
        passed=False,
        observed=None,
        threshold=None,
        details={
            "expectation": config["type"],
            "column": _column(config.get("kwargs", {})),
            "unexpected_count": None,
            "sample": [],
            "error": message,
        },
    )


def _outcome(suite: str, result: ExpectationValidationResult) -> CheckOutcome:
    """Map one GX expectation result to a CheckOutcome."""
    config = result.expectation_config
    assert config is not None
    as_dict = {"type": config.type, "kwargs": dict(config.kwargs), "meta": config.meta}
    error = _error_message(result.exception_info)
    if error is not None:
        return _error_outcome(suite, as_dict, error)
    observed, threshold, extra = _measure(as_dict, result.result or {})
    return CheckOutcome(
        check_name=_check_name(suite, as_dict),
        severity=_severity(config.severity),
        passed=bool(result.success),
        observed=observed,
        threshold=threshold,
        details={
            "expectation": config.type,
            "column": _column(config.kwargs),
            **extra,
        },
    )


def _error_message(info: Any) -> str | None:
    """The first exception message in a GX `exception_info` (flat, or keyed by metric id)."""
    if not info:
        return None
    entries = [info] if "raised_exception" in info else list(info.values())
    for entry in entries:
        if isinstance(entry, Mapping) and entry.get("raised_exception"):
            return redact(entry.get("exception_message") or "metric computation failed")
    return None


def _column(kwargs: Mapping[str, Any]) -> str | list[str] | None:
    """The column (or column list) an expectation is about."""
    column = kwargs.get("column", kwargs.get("column_list"))
    return list(column) if isinstance(column, list | tuple) else column


def _measure(
    config: Mapping[str, Any], result: Mapping[str, Any]
) -> tuple[float | None, float | None, dict[str, Any]]:
    """Observed value, threshold and extra details for one result, by expectation shape."""
    kwargs = config["kwargs"]
    if "unexpected_count" in result:
        return _measure_map(kwargs, result)
    if "partial_missing_list" in result or config["type"].endswith("_to_contain_set"):
        missing = int(result.get("missing_count") or 0)
        sample = _sample(result.get("partial_missing_list") or [])
        return float(missing), 0.0, {"unexpected_count": missing, "sample": sample}
    observed = result.get("observed_value")
    minimum = kwargs.get("min_value")
    return (
        _number(observed),
        _number(minimum),
        {"observed_value": _json_safe(observed), "min_value": _json_safe(minimum)},
    )


def _measure_map(
    kwargs: Mapping[str, Any], result: Mapping[str, Any]
) -> tuple[float | None, float | None, dict[str, Any]]:
    """Unexpected-row count against the rows `mostly` allows, with a sample of offending values."""
    unexpected = int(result.get("unexpected_count") or 0)
    elements = int(result.get("element_count") or 0)
    considered = elements - int(result.get("missing_count") or 0)
    mostly = float(kwargs.get("mostly", 1.0))
    allowed = round((1.0 - mostly) * considered, 6)
    return (
        float(unexpected),
        allowed,
        {
            "unexpected_count": unexpected,
            "element_count": elements,
            "mostly": mostly,
            "sample": _sample(result.get("partial_unexpected_list") or []),
        },
    )


def _sample(values: list[Any]) -> list[Any]:
    """Up to SAMPLE_SIZE distinct offending values, JSON-safe."""
    seen: dict[str, Any] = {}
    for value in values:
        safe = _json_safe(value)
        seen.setdefault(json.dumps(safe, sort_keys=True), safe)
    return list(seen.values())[:SAMPLE_SIZE]


def _json_safe(value: Any) -> Any:
    """A value jsonb accepts: ISO timestamps, non-finite floats as strings."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _number(value: Any) -> float | None:
    """A numeric observation as float (None when absent or not a number)."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    return float(value)
