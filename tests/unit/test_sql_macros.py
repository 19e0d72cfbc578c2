"""The Jinja macros the query files share (abflow/sql/macros.sql) against what they stand for."""

from __future__ import annotations

import re

import pytest

from abflow.cohorts import COHORTS
from abflow.warehouse import sqlfiles
from abflow.warehouse.sqlfiles import SQL_DIR, query_sql, read_sql


def _macro_value(name: str) -> list[object]:
    """A top-level variable of macros.sql, rendered as a list of text items."""
    text = (
        sqlfiles._queries()
        .from_string('{% from "macros.sql" import ' + name + " %}{{ " + name + ' | join("|") }}')
        .render()
    )
    return list(text.split("|"))


def test_cohorts_are_the_novelty_cohorts() -> None:
    # the SQL has columns per cohort; abflow/cohorts.py binds each cohort's first day and name
    assert _macro_value("cohorts") == [str(k) for k in range(len(COHORTS))]


def test_partial_columns_are_the_stored_partials_columns() -> None:
    created = re.search(
        r"create table if not exists unit_metric_partials \((.*?)\n\)",
        read_sql("migrations/004_incremental.sql"),
        flags=re.DOTALL,
    )
    assert created is not None
    columns = re.findall(r"^\s+(\w+) (?:bigint|double precision)", created.group(1), re.MULTILINE)
    for later in ("012_metrics_partials.sql", "014_onepass_cohort_partials.sql"):
        columns += re.findall(
            r"alter table unit_metric_partials add column if not exists (\w+)",
            read_sql(f"migrations/{later}"),
        )
    assert len(columns) == 50  # 13 (004) + 4 (012) + 33 (014)
    listed = _macro_value("partial_columns")
    assert len(listed) == len(set(listed))
    assert sorted(listed) == sorted(columns)


@pytest.mark.parametrize(
    "relative", sorted(f"queries/{p.name}" for p in (SQL_DIR / "queries").glob("*.sql"))
)
def test_query_files_render_to_plain_sql(relative: str) -> None:
    text = query_sql(relative)
    assert not re.search(r"\{[{%#]|[}%#]\}", text), "a Jinja tag was left unexpanded"


def test_an_unknown_name_in_a_query_file_is_an_error() -> None:
    from jinja2 import UndefinedError

    with pytest.raises(UndefinedError):
        sqlfiles._queries().from_string("select {{ no_such_column }}").render()
