"""The Grafana dashboard works as abflow_reader, and its variables cannot inject SQL.

Each panel query and variable query of dashboards/abflow_grafana.json is interpolated the way
Grafana's PostgreSQL data source does it (`${var:sqlstring}`: the value quoted, `'` doubled;
`$__timeFilter(col)`: a BETWEEN on the time range) and run as a real LOGIN role that is only in
abflow_reader.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text

from abflow.settings import Settings
from abflow.warehouse import writer
from tests.conftest import DEMO_AS_OF, analyse, login_engine, repo_root

DASHBOARD = repo_root() / "dashboards" / "abflow_grafana.json"
_VARIABLE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)")
_TIME_FILTER = re.compile(r"\$__timeFilter\(([^)]+)\)")


def _queries() -> dict[str, str]:
    """Panel title (or variable name) -> raw SQL."""
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    out = {
        f"panel {p['title']}": t["rawSql"]
        for p in board["panels"]
        for t in p.get("targets", [])
        if "rawSql" in t
    }
    out |= {f"variable {v['name']}": v["query"] for v in board["templating"]["list"]}
    return out


def grafana_sqlstring(value: str) -> str:
    """Grafana's sqlstring format for one value: quoted, single quotes doubled."""
    return "'" + value.replace("'", "''") + "'"


def interpolate(sql: str, variables: dict[str, str], schema: str) -> str:
    """What Grafana sends: macros expanded, variables formatted; raw `$var` use is refused."""
    sql = _TIME_FILTER.sub(r"\1 BETWEEN '2026-10-01T00:00:00Z' AND '2026-12-31T00:00:00Z'", sql)

    def variable(m: re.Match[str]) -> str:
        name, fmt, bare = m.group(1), m.group(2), m.group(3)
        if bare is not None or fmt != "sqlstring":
            raise AssertionError(f"variable used without :sqlstring formatting: {m.group(0)}")
        return grafana_sqlstring(variables[name])

    return _VARIABLE.sub(variable, sql).replace("abflow.", f'"{schema}".')


@pytest.fixture(scope="module")
def reader(engine: Engine, settings: Settings, demo_loaded: dict[str, Any]) -> Iterator[Engine]:
    e = demo_loaded["experiments"]["followup_timing"]
    result = analyse(engine, e, as_of=DEMO_AS_OF)
    with engine.begin() as conn:
        writer.lock_experiment(conn, e.key, 10)
        writer.write_result(conn, result)
    yield from login_engine(engine, settings, "abflow_reader")


QUERIES = _queries()


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_every_query_runs_as_the_reader(reader: Engine, settings: Settings, name: str) -> None:
    sql = interpolate(
        QUERIES[name],
        {"experiment": "followup_timing", "metric": "meeting_booked_rate"},
        settings.schema_name,
    )
    with reader.connect() as conn:
        rows = conn.execute(text(sql)).all()
    assert rows, name  # the demo experiment has data for every panel


INJECTIONS = [
    "x' or '1'='1",
    "followup_timing' --",
    "'; drop table insights; --",
    "followup_timing\\' or 1=1 --",
]


@pytest.mark.parametrize("payload", INJECTIONS)
def test_variables_are_literals_not_sql(
    reader: Engine, engine: Engine, settings: Settings, payload: str
) -> None:
    """A crafted variable value matches no experiment, runs no statement, changes nothing."""
    for name, raw in QUERIES.items():
        if "$" not in raw:
            continue
        sql = interpolate(raw, {"experiment": payload, "metric": payload}, settings.schema_name)
        with reader.connect() as conn:
            rows = conn.execute(text(sql)).all()
        # aggregate panels return one row of zero; every other panel returns nothing
        assert rows in ([], [(0,)]), (name, rows)
    with engine.connect() as conn:
        assert conn.execute(text("select count(*) from insights")).scalar()


def test_the_dashboard_needs_nothing_beyond_abflow_reader() -> None:
    """Every relation a query reads is one abflow_reader may select (see test_roles.MATRIX)."""
    from tests.integration.test_roles import MATRIX

    readable = {rel for rel, roles in MATRIX.items() if "select" in roles["abflow_reader"]}
    used = {m for sql in QUERIES.values() for m in re.findall(r"abflow\.(\w+)", sql)}
    assert used and used <= readable, used - readable
