"""The analysis flow with the warehouse elsewhere: DuckDB on Parquet, results in PostgreSQL.

ABFLOW_WAREHOUSE_URL points at a DuckDB database and the sources at Parquet files; the flow
extracts and validates there (the suites as SQL) and writes runs, insights and recommendations
to the PostgreSQL results database, with the same decisions as a PostgreSQL warehouse gives.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine, text

from abflow.definitions import parse_experiment
from abflow.settings import Settings, get_settings
from abflow.warehouse import lake
from abflow.warehouse.experiments_repo import upsert_experiments
from tests.conftest import DEMO_AS_OF, analyse

pytest.importorskip("duckdb")

KEYS = {"followup_timing": "eng_flow_followup", "enrichment_strategy": "eng_flow_enrichment"}


def test_flow_on_duckdb_parquet_writes_the_same_decisions_to_postgres(
    prefect_harness: None,
    abflow_env: Settings,
    engine: Engine,
    demo_loaded: dict[str, Any],
    demo_frames: tuple[pd.DataFrame, pd.DataFrame],
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from abflow.flows.analyze import analyze_experiments

    originals = demo_loaded["experiments"]
    copies = {
        new: parse_experiment({**originals[old].model_dump(mode="json"), "key": new})
        for old, new in KEYS.items()
    }
    with engine.begin() as conn:
        upsert_experiments(conn, list(copies.values()))
    assignments, events = demo_frames
    relabelled = assignments[assignments["experiment_key"].isin(list(KEYS))].copy()
    relabelled["experiment_key"] = relabelled["experiment_key"].map(KEYS)
    sources = lake.write_demo_parquet(tmp_path / "lake", relabelled, events)
    monkeypatch.setenv("ABFLOW_WAREHOUSE_URL", f"duckdb:///{tmp_path / 'empty.duckdb'}")
    monkeypatch.setenv("ABFLOW_ASSIGNMENTS_SOURCE", sources["assignments"])
    monkeypatch.setenv("ABFLOW_EVENTS_SOURCE", sources["events"])
    get_settings.cache_clear()

    summaries = analyze_experiments(experiment_keys=list(copies), as_of=DEMO_AS_OF)

    by_key = {s["experiment_key"]: s for s in summaries}
    for old, new in KEYS.items():
        want = analyse(engine, originals[old]).recommendation
        assert by_key[new]["status"] == "succeeded", by_key[new]
        assert (by_key[new]["decision"], by_key[new]["variant_key"]) == (
            want.decision,
            want.variant_key,
        )
        with engine.connect() as conn:
            written = conn.execute(
                text(
                    "select r.rationale, count(h.*) filter (where h.check_name like 'gx_%')"
                    " from recommendations r join analysis_runs a using (run_id)"
                    " join health_checks h using (run_id)"
                    " where a.experiment_key = :k and a.as_of = :t group by r.rationale"
                ),
                {"k": new, "t": DEMO_AS_OF},
            ).one()
        assert written[0] == want.rationale
        assert written[1] > 0  # the data-quality suites ran (as SQL in DuckDB)
