"""Great Expectations quality gate against a real embedded PostgreSQL (SPEC §5)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from psycopg import sql
from sqlalchemy import Engine, text

from abflow.definitions import Experiment, parse_experiment
from abflow.results import CheckOutcome
from abflow.warehouse.quality import (
    bind_suite,
    load_suite,
    render,
    run_expectations,
    suite_parameters,
    text_literal,
    value_event_names,
)

SCHEMA = f"gx_{uuid.uuid4().hex[:10]}"
NOW = datetime.now(UTC).replace(microsecond=0)
START = NOW - timedelta(days=3)
UNITS = 40

AssignmentRow = tuple[str, str, str, datetime]
EventRow = tuple[str, str, float | None, datetime]

ALL_CHECKS = {
    "gx_assignments_window_not_empty",
    "gx_assignments_experiment_key_not_null",
    "gx_assignments_unit_id_not_null",
    "gx_assignments_variant_key_not_null",
    "gx_assignments_assigned_at_not_null",
    "gx_assignments_variant_key_in_set",
    "gx_assignments_assigned_at_in_window",
    "gx_assignments_assigned_at_not_in_future",
    "gx_events_unit_id_not_null",
    "gx_events_event_name_not_null",
    "gx_events_occurred_at_not_null",
    "gx_events_occurred_at_not_in_future",
    "gx_events_value_not_null",
    "gx_events_value_finite_in_range",
    "gx_events_no_duplicate_rows",
    "gx_variant_stats_all_variants_exposed",
    "gx_variant_stats_units_not_dropped",
}


@dataclass(frozen=True)
class Warehouse:
    """A migrated schema on the embedded server and the URL GX connects with."""

    engine: Engine
    url: str
    schema: str


@pytest.fixture(scope="module")
def warehouse(pg_url: str) -> Iterator[Warehouse]:
    """The session's PostgreSQL, a migrated schema of this module's own, dropped afterwards."""
    from abflow.settings import Settings
    from abflow.warehouse.engine import make_engine
    from abflow.warehouse.migrate import migrate

    # Own schema: these tests truncate the raw tables, which the shared demo schema must keep.
    settings = Settings(database_url=pg_url, ABFLOW_SCHEMA=SCHEMA)
    engine = make_engine(settings)
    migrate(engine, settings.schema_name)
    yield Warehouse(engine, pg_url, SCHEMA)
    with engine.begin() as conn:
        conn.execute(text(f'drop schema if exists "{SCHEMA}" cascade'))
    engine.dispose()


def make_experiment(key: str = "gx_exp", value_event: str = "purchase") -> Experiment:
    """Two arms; proportion, value-sum, ratio (counts) and value-mean metrics."""
    return parse_experiment(
        {
            "key": key,
            "name": "GX quality test",
            "status": "running",
            "start_at": START.isoformat(),
            "variants": [
                {"key": "control", "weight": 0.5, "control": True},
                {"key": "green", "weight": 0.5},
            ],
            "metrics": [
                {
                    "key": "purchase_rate",
                    "kind": "proportion",
                    "event": value_event,
                    "role": "primary",
                },
                {"key": "revenue", "kind": "mean", "event": value_event, "value": "sum"},
                {
                    "key": "ctr",
                    "kind": "ratio",
                    "numerator": {"event": "click"},
                    "denominator": {"event": "impression"},
                },
                {
                    "key": "latency_ms",
                    "kind": "mean",
                    "event": "page_load",
                    "value": "mean",
                    "direction": "decrease",
                    "role": "guardrail",
                },
            ],
        }
    )


def load(
    wh: Warehouse,
    assignments: list[AssignmentRow],
    events: list[EventRow],
) -> None:
    """Replace the raw tables' contents."""
    with wh.engine.begin() as conn:
        conn.execute(text("truncate assignments, events"))
        if assignments:
            conn.execute(
                text(
                    "insert into assignments (experiment_key, unit_id, variant_key, assigned_at)"
                    " values (:k, :u, :v, :t)"
                ),
                [{"k": k, "u": u, "v": v, "t": t} for k, u, v, t in assignments],
            )
        if events:
            conn.execute(
                text(
                    "insert into events (unit_id, event_name, value, occurred_at)"
                    " values (:u, :n, :x, :t)"
                ),
                [{"u": u, "n": n, "x": x, "t": t} for u, n, x, t in events],
            )


def clean_rows(
    key: str = "gx_exp", value_event: str = "purchase"
) -> tuple[list[AssignmentRow], list[EventRow]]:
    """40 units in two arms with impressions, clicks, purchases and page loads, all in-window."""
    assignments: list[AssignmentRow] = []
    events: list[EventRow] = []
    for i in range(UNITS):
        unit, at = f"u{i:02d}", START + timedelta(hours=i)
        assignments.append((key, unit, "green" if i % 2 else "control", at))
        events.append((unit, "impression", None, at + timedelta(hours=1)))
        events.append((unit, "page_load", 100.0 + i, at + timedelta(minutes=90)))
        if i % 2 == 0:
            events.append((unit, "click", None, at + timedelta(hours=2)))
        if i % 4 == 0:
            events.append((unit, value_event, 10.0 + i, at + timedelta(hours=3)))
    return assignments, events


def by_name(outcomes: list[CheckOutcome]) -> dict[str, CheckOutcome]:
    """Outcomes keyed by check name (names are unique)."""
    named = {o.check_name: o for o in outcomes}
    assert len(named) == len(outcomes)
    return named


def run(wh: Warehouse, experiment: Experiment, **kwargs: Any) -> dict[str, CheckOutcome]:
    """run_expectations at NOW on the test schema."""
    return by_name(run_expectations(wh.url, wh.schema, experiment, NOW, **kwargs))


# --- pure parts -----------------------------------------------------------------------------------


def test_value_events_are_the_value_aggregated_ones() -> None:
    """Proportions and count-ratios need no value; sum/mean metrics do."""
    assert value_event_names(make_experiment()) == ["page_load", "purchase"]


def test_unset_parameters_skip_their_expectations() -> None:
    """No previous run -> no drop check; no value metric -> no value checks."""
    exp = parse_experiment(
        {
            "key": "counts_only",
            "name": "n",
            "start_at": START.isoformat(),
            "variants": [{"key": "a", "weight": 0.5, "control": True}, {"key": "b", "weight": 0.5}],
            "metrics": [{"key": "conv", "kind": "proportion", "event": "buy", "role": "primary"}],
        }
    )
    params = suite_parameters(exp, NOW, NOW, previous_units=None)
    events = [e["meta"]["check"] for e in bind_suite(load_suite("events"), params)]
    stats = [e["meta"]["check"] for e in bind_suite(load_suite("variant_stats"), params)]
    assert "value_not_null" not in events and "value_finite_in_range" not in events
    assert stats == ["all_variants_exposed"]
    assert suite_parameters(exp, NOW, NOW, previous_units=101)["min_units"] == 51


def test_literals_gx_would_rewrite_are_hex_encoded() -> None:
    """':' and '%' never reach GX's text() inside a literal; unsafe text is refused."""
    rendered = render(sql.SQL("select {}").format(text_literal("pay: 100%")))
    assert ":" not in rendered and "%" not in rendered
    assert render(sql.SQL("select {}").format(text_literal("it's"))) == "select 'it''s'"
    with pytest.raises(ValueError, match="altered by GX"):
        render(sql.SQL("select {}").format(sql.Literal("a :b")))


# --- against PostgreSQL ---------------------------------------------------------------------------


def test_clean_data_passes_every_check(warehouse: Warehouse) -> None:
    """Every expectation runs and passes on clean data."""
    load(warehouse, *clean_rows())
    outcomes = run(warehouse, make_experiment(), previous_units=UNITS)
    assert set(outcomes) == ALL_CHECKS
    failed = {n: o for n, o in outcomes.items() if not o.passed}
    assert failed == {}
    assert outcomes["gx_assignments_window_not_empty"].observed == UNITS
    assert outcomes["gx_variant_stats_units_not_dropped"].observed == UNITS
    assert outcomes["gx_variant_stats_units_not_dropped"].threshold == UNITS / 2


def dirty_rows() -> tuple[list[AssignmentRow], list[EventRow]]:
    """Clean data plus 3 'purple' units, 2 NULL values, 4 future events, 2 duplicate rows."""
    assignments, events = clean_rows()
    assignments += [("gx_exp", f"p{i}", "purple", START + timedelta(hours=i)) for i in range(3)]
    events += [
        ("u01", "purchase", None, START + timedelta(hours=5)),
        ("u03", "purchase", None, START + timedelta(hours=6)),
    ]
    events += [(f"u{i:02d}", "impression", None, NOW + timedelta(days=1)) for i in range(4)]
    events += [e for e in events if e[1] == "click" and e[0] in ("u00", "u02")]
    return assignments, events


@pytest.fixture(scope="module")
def dirty(warehouse: Warehouse) -> dict[str, CheckOutcome]:
    """GX's outcomes on the dirty rows."""
    load(warehouse, *dirty_rows())
    return run(warehouse, make_experiment(), previous_units=UNITS)


def test_sql_validation_agrees_with_gx(warehouse: Warehouse) -> None:
    """The default path (the suites as SQL, then samples of what failed) gives GX's outcomes:
    the same checks, severities, pass/fail, observed values, thresholds, counts and samples."""
    from abflow.warehouse.validate import validate_postgres

    load(warehouse, *dirty_rows())
    experiment = make_experiment()
    gx = run(warehouse, experiment, previous_units=UNITS)
    with warehouse.engine.connect() as conn, conn.begin():
        as_sql = by_name(
            validate_postgres(
                conn,
                SCHEMA,
                experiment,
                NOW,
                assignments_source="assignments",
                events_source="events",
                previous_units=UNITS,
            )
        )
    assert set(as_sql) == set(gx) == ALL_CHECKS
    assert {n for n, o in as_sql.items() if not o.passed} == {
        n for n, o in gx.items() if not o.passed
    }
    for name, expected in gx.items():
        got = as_sql[name]
        assert (got.severity, got.passed, got.observed) == (
            expected.severity,
            expected.passed,
            expected.observed,
        ), name
        assert got.threshold == pytest.approx(expected.threshold), name
        for key in ("unexpected_count", "element_count", "mostly"):
            assert got.details.get(key) == expected.details.get(key), (name, key)
        samples = [sorted(map(json.dumps, o.details.get("sample", []))) for o in (got, expected)]
        assert samples[0] == samples[1], name


@pytest.mark.parametrize(
    ("check", "severity", "observed"),
    [
        ("gx_assignments_variant_key_in_set", "critical", 3),
        ("gx_events_value_not_null", "critical", 2),
        ("gx_events_occurred_at_not_in_future", "warning", 4),
        ("gx_events_no_duplicate_rows", "warning", 2),
    ],
)
def test_dirty_data_is_counted(
    dirty: dict[str, CheckOutcome], check: str, severity: str, observed: int
) -> None:
    """Each planted defect fails exactly its check with the exact count."""
    outcome = dirty[check]
    assert (outcome.severity, outcome.passed, outcome.observed) == (severity, False, observed)
    assert outcome.details["unexpected_count"] == observed
    assert "error" not in outcome.details


def test_dirty_data_fails_nothing_else(dirty: dict[str, CheckOutcome]) -> None:
    """Only the four planted defects fail; details are jsonb-safe."""
    assert {n for n, o in dirty.items() if not o.passed} == {
        "gx_assignments_variant_key_in_set",
        "gx_events_value_not_null",
        "gx_events_occurred_at_not_in_future",
        "gx_events_no_duplicate_rows",
    }
    json.dumps([o.details for o in dirty.values()], allow_nan=False)


def test_dirty_samples_show_the_offending_values(dirty: dict[str, CheckOutcome]) -> None:
    """Samples name the unknown variant, the NULLs and the duplicated rows."""
    assert dirty["gx_assignments_variant_key_in_set"].details["sample"] == ["purple"]
    assert dirty["gx_events_value_not_null"].details["sample"] == [None]
    duplicates = dirty["gx_events_no_duplicate_rows"].details["sample"]
    assert sorted(d.split(" | ")[:2] for d in duplicates) == [["u00", "click"], ["u02", "click"]]
    assert dirty["gx_events_value_not_null"].threshold == pytest.approx(0.01 * 52)
    assert dirty["gx_variant_stats_units_not_dropped"].observed == UNITS  # purple excluded


def test_non_finite_values_are_critical(warehouse: Warehouse) -> None:
    """NaN and ±Infinity on a value metric's events fail the range check."""
    assignments, events = clean_rows()
    events += [
        ("u00", "page_load", float("nan"), START + timedelta(hours=7)),
        ("u01", "purchase", float("inf"), START + timedelta(hours=8)),
    ]
    load(warehouse, assignments, events)
    outcome = run(warehouse, make_experiment())["gx_events_value_finite_in_range"]
    assert (outcome.severity, outcome.passed, outcome.observed) == ("critical", False, 2)
    # the sample names the rows: unit | event | time | value
    rows = sorted(s.split(" | ") for s in outcome.details["sample"])
    assert [(r[0], r[1], r[3]) for r in rows] == [
        ("u00", "page_load", "NaN"),
        ("u01", "purchase", "Infinity"),
    ]


def test_exposures_outside_the_window_warn(warehouse: Warehouse) -> None:
    """An exposure before start_at is a warning, not a critical failure."""
    assignments, events = clean_rows()
    assignments.append(("gx_exp", "early", "control", START - timedelta(hours=1)))
    load(warehouse, assignments, events)
    outcome = run(warehouse, make_experiment())["gx_assignments_assigned_at_in_window"]
    assert (outcome.severity, outcome.passed, outcome.observed) == ("warning", False, 1)


def test_sudden_drop_in_units_warns(warehouse: Warehouse) -> None:
    """Fewer than half the previous run's units is a warning; no previous run, no check."""
    load(warehouse, *clean_rows())
    dropped = run(warehouse, make_experiment(), previous_units=3 * UNITS)
    outcome = dropped["gx_variant_stats_units_not_dropped"]
    assert (outcome.severity, outcome.passed, outcome.observed, outcome.threshold) == (
        "warning",
        False,
        UNITS,
        1.5 * UNITS,
    )
    assert "gx_variant_stats_units_not_dropped" not in run(warehouse, make_experiment())


def test_empty_window_is_critical(warehouse: Warehouse) -> None:
    """No exposures for the experiment fails the critical row-count check."""
    load(warehouse, *clean_rows())
    outcomes = run(warehouse, make_experiment(key="other_exp"))
    empty = outcomes["gx_assignments_window_not_empty"]
    assert (empty.severity, empty.passed, empty.observed, empty.threshold) == (
        "critical",
        False,
        0,
        1,
    )
    assert not outcomes["gx_variant_stats_all_variants_exposed"].passed


def test_event_names_with_colons_and_percents_are_not_corrupted(warehouse: Warehouse) -> None:
    """Literals GX would rewrite (':name', '%') still select the right rows."""
    name = "checkout :paid 100%"
    assignments, events = clean_rows(value_event=name)
    events.append(("u01", name, None, START + timedelta(hours=5)))
    load(warehouse, assignments, events)
    outcome = run(warehouse, make_experiment(value_event=name))["gx_events_value_not_null"]
    assert (outcome.passed, outcome.observed, outcome.details["element_count"]) == (False, 1, 51)


def test_a_broken_source_fails_its_checks_without_raising(warehouse: Warehouse) -> None:
    """A missing events relation turns every events check into a critical error outcome."""
    load(warehouse, *clean_rows())
    outcomes = run(warehouse, make_experiment(), events_source="no_such_view")
    events = {n: o for n, o in outcomes.items() if n.startswith("gx_events_")}
    assert events and all(
        (o.severity, o.passed, o.observed) == ("critical", False, None) for o in events.values()
    )
    assert all("no_such_view" in o.details["error"] for o in events.values())
    assert all(o.passed for n, o in outcomes.items() if n.startswith("gx_assignments_"))
