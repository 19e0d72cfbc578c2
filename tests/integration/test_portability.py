"""The one-pass metric SQL runs unchanged on a second engine (DuckDB) with identical results."""

from __future__ import annotations

import math
import re
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine

from abflow.warehouse import extract
from abflow.warehouse.sqlfiles import read_sql
from tests.conftest import DEMO_AS_OF

duckdb = pytest.importorskip("duckdb")

COLUMNS = (
    "exposed_units",
    "units",
    "sum",
    "sum_squares",
    "denominator_sum",
    "denominator_sum_squares",
    "sum_products",
    "covariate_sum",
    "covariate_sum_squares",
    "covariate_sum_products",
    "contaminated_units",
)


def _params(experiment: Any) -> dict[str, Any]:
    lookback = experiment.analysis.cuped.lookback_days if experiment.analysis.cuped else 0
    return {
        "start_at": experiment.start_at,
        "as_of": DEMO_AS_OF,
        "lookback_days": lookback,
        "value_limit": extract.VALUE_LIMIT,
        **extract.metric_arrays(experiment),
    }


@pytest.mark.parametrize("key", ["checkout_button", "followup_timing", "enrichment_strategy"])
def test_metric_sql_runs_unchanged_on_duckdb(
    key: str,
    engine: Engine,
    demo_loaded: dict[str, Any],
    demo_frames: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    experiment = demo_loaded["experiments"][key]
    # PostgreSQL: the production path, plus the analysed-unit tables it built (test-only read).
    with engine.begin() as conn:
        pg_rows = extract.fetch_sufficient_stats(
            conn, experiment, DEMO_AS_OF, assignments="assignments", events="events"
        )
        units = pd.read_sql("select unit_id, first_exposed_at, variant_key from abflow_units", conn)
        segments = pd.read_sql("select * from abflow_unit_segments", conn)
        metric_events = pd.read_sql("select * from abflow_metric_events", conn)
    _, events = demo_frames
    duck = duckdb.connect()
    duck.register("units_df", units)
    duck.register("segments_df", segments)
    duck.register("metric_events_df", metric_events)
    duck.register("events_df", events[["unit_id", "event_name", "value", "occurred_at"]])
    duck.execute("create table abflow_units as select * from units_df")
    duck.execute("create table abflow_unit_segments as select * from segments_df")
    duck.execute("create table abflow_metric_events as select * from metric_events_df")
    duck.execute("create table events as select * from events_df")

    # The same file, byte for byte: only the identifier slot is filled (as psycopg.sql does)
    # and the driver's placeholder syntax differs (%(name)s for psycopg, $name for DuckDB).
    template = read_sql("queries/metric_stats.sql").replace("{events}", '"events"')
    params = _params(experiment)
    used = set(re.findall(r"%\((\w+)\)s", template))
    text = re.sub(r"%\((\w+)\)s", r"$\1", template)
    result = duck.execute(text, {k: v for k, v in params.items() if k in used})
    cols = [d[0] for d in result.description]
    duck_rows = {(r[0], r[1], r[2]): dict(zip(cols, r, strict=True)) for r in result.fetchall()}

    pg = {(r.metric_key, r.variant_key, r.segment): r for r in pg_rows}
    assert set(duck_rows) == set(pg) and len(pg) > 0
    for k, row in pg.items():
        for c in COLUMNS:
            a, b = getattr(row, c), duck_rows[k][c]
            if a is None or b is None:
                assert a is None and b is None, (k, c, a, b)
            else:
                assert math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9), (k, c, a, b)
