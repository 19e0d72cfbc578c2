"""No code path of the analysis flow pulls raw event rows into Python (issue 7, SPEC §9).

Every row any psycopg cursor hands to Python during a full flow run is counted: abflow's own
queries, the Great Expectations suites (GX talks to PostgreSQL through SQLAlchemy + psycopg),
the writes' RETURNING clauses. The demo warehouse holds 155,061 events; the flow may fetch
only aggregates, definitions and GX's few sample values.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, text

from abflow.settings import Settings
from tests.conftest import DEMO_AS_OF

# Measured on the demo (2026-11-23): 177 fetches, the largest 48 rows (metrics x variants x
# segments of one experiment), 188 rows in all. A query returning even 1% of the events fails.
MAX_ROWS_PER_FETCH = 200
MAX_ROWS_PER_RUN = 1_000


class _RowCounter:
    """Thread-safe tally of rows returned by cursor fetches (tasks run on worker threads)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.fetches: list[int] = []

    def add(self, n: int) -> None:
        with self.lock:
            self.fetches.append(n)


def _counting(
    method: Callable[..., Any], counter: _RowCounter, *, many: bool
) -> Callable[..., Any]:
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = method(self, *args, **kwargs)
        counter.add(len(result) if many else int(result is not None))
        return result

    return wrapper


def test_flow_fetches_aggregates_not_events(
    prefect_harness: None,
    abflow_env: Settings,
    engine: Engine,
    demo_loaded: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from abflow.flows.analyze import analyze_experiments

    with engine.connect() as conn:
        events = conn.execute(text("select count(*) from events")).scalar_one()
    counter = _RowCounter()
    for cls in (psycopg.Cursor, psycopg.ServerCursor):
        for name, many in (("fetchall", True), ("fetchmany", True), ("fetchone", False)):
            if name in vars(cls):
                monkeypatch.setattr(cls, name, _counting(getattr(cls, name), counter, many=many))

    def iterate(self: Any) -> Any:  # `for row in cursor` bypasses the fetch methods
        while (row := self.fetchone()) is not None:
            yield row

    monkeypatch.setattr(psycopg.Cursor, "__iter__", iterate)

    keys = ["checkout_button", "followup_timing", "enrichment_strategy"]
    summaries = analyze_experiments(experiment_keys=keys, as_of=DEMO_AS_OF)
    assert [s["status"] for s in summaries] == ["succeeded"] * 3

    assert events > 100_000
    assert counter.fetches, "the counting hook saw no fetch at all: it is not wired in"
    assert max(counter.fetches) <= MAX_ROWS_PER_FETCH, sorted(counter.fetches)[-10:]
    assert sum(counter.fetches) <= MAX_ROWS_PER_RUN, sum(counter.fetches)
