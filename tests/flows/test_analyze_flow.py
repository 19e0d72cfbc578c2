"""The analysis and backfill flows end to end under prefect_test_harness."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import Engine, text

from abflow.settings import Settings
from tests.conftest import DEMO_AS_OF


def test_analyze_flow_writes_results_and_artifacts(
    prefect_harness: None, abflow_env: Settings, engine: Engine, demo_loaded: dict[str, Any]
) -> None:
    from prefect import get_client

    from abflow.flows.analyze import analyze_experiments

    keys = ["checkout_button", "followup_timing", "enrichment_strategy"]
    summaries = analyze_experiments(experiment_keys=keys, as_of=DEMO_AS_OF)
    by_key = {s["experiment_key"]: s for s in summaries}
    assert {k: by_key[k]["status"] for k in keys} == dict.fromkeys(keys, "succeeded")
    assert by_key["checkout_button"]["decision"] == "ship"
    assert by_key["checkout_button"]["variant_key"] == "green"
    assert by_key["followup_timing"]["decision"] == "keep_running"
    assert by_key["enrichment_strategy"]["decision"] == "ship"
    assert by_key["enrichment_strategy"]["variant_key"] == "hybrid"
    with engine.connect() as conn:
        runs = conn.execute(
            text(
                "select experiment_key, status, flow_run_id from analysis_runs where as_of = :a"
                " and experiment_key = any(:k)"
            ),
            {"a": DEMO_AS_OF, "k": keys},
        ).all()
        checks = conn.execute(
            text(
                "select count(*) from health_checks h join analysis_runs r using (run_id)"
                " where r.as_of = :a and h.check_name like 'gx_%'"
            ),
            {"a": DEMO_AS_OF},
        ).scalar()
    assert len(runs) == 3 and all(r.flow_run_id for r in runs)
    assert checks > 0  # the Great Expectations gate ran inside the flow

    import anyio

    async def artifact_keys() -> set[str]:
        async with get_client() as client:
            arts = await client.read_artifacts()
        return {a.key for a in arts if a.key}

    found = anyio.run(artifact_keys)
    for k in keys:
        dashed = k.replace("_", "-")
        assert f"abflow-{dashed}-results" in found and f"abflow-{dashed}-summary" in found


def test_backfill_flow_writes_one_as_of_per_day_and_reruns_replace(
    prefect_harness: None, abflow_env: Settings, engine: Engine, demo_loaded: dict[str, Any]
) -> None:
    from abflow.flows.backfill import backfill_experiments

    def count() -> list[Any]:
        with engine.connect() as conn:
            return conn.execute(
                text(
                    "select as_of, count(*) from analysis_runs"
                    " where experiment_key = 'followup_timing'"
                    " and as_of between '2026-11-11' and '2026-11-13' group by as_of order by as_of"
                )
            ).all()

    out = backfill_experiments(
        start=date(2026, 11, 10), end=date(2026, 11, 12), experiments=["followup_timing"]
    )
    assert [s["status"] for s in out] == ["succeeded"] * 3
    first = count()
    assert [c for _, c in first] == [1, 1, 1]
    assert [a.day for a, _ in first] == [11, 12, 13]  # end of each day = next midnight
    backfill_experiments(
        start=date(2026, 11, 10), end=date(2026, 11, 12), experiments=["followup_timing"]
    )
    assert count() == first


def test_one_broken_experiment_does_not_stop_the_others(
    prefect_harness: None, abflow_env: Settings, engine: Engine, demo_loaded: dict[str, Any]
) -> None:
    """A source that breaks for one experiment is recorded as failed; the rest succeed."""
    from abflow.definitions import parse_experiment
    from abflow.flows.analyze import analyze_experiments
    from abflow.warehouse.experiments_repo import upsert_experiments

    broken = parse_experiment(
        {
            "key": "broken_metric",
            "name": "broken",
            "status": "running",
            "start_at": "2026-11-01T00:00:00Z",
            "variants": [{"key": "a", "weight": 0.5, "control": True}, {"key": "b", "weight": 0.5}],
            "metrics": [{"key": "m", "kind": "proportion", "event": "x", "role": "primary"}],
        }
    )
    with engine.begin() as conn:
        upsert_experiments(conn, [broken])
        # Corrupt the stored definition so loading it fails the way a bad hand edit would.
        conn.execute(
            text(
                "update experiments set definition = definition - 'variants'"
                " where experiment_key = 'broken_metric'"
            )
        )
    summaries = analyze_experiments(experiment_keys=None, as_of=DEMO_AS_OF)
    # load_experiments validates definitions: a broken one must be reported, not crash the run
    statuses = {s["experiment_key"]: s["status"] for s in summaries}
    assert statuses["broken_metric"] == "failed"
    assert statuses["checkout_button"] == "succeeded"


def test_incremental_flow_matches_full_recompute(
    prefect_harness: None,
    abflow_env: Settings,
    engine: Engine,
    demo_loaded: dict[str, Any],
    monkeypatch: Any,
) -> None:
    """ABFLOW_INCREMENTAL=true: day-2 results from the refreshed partials equal a full pass."""
    from datetime import UTC, datetime

    from abflow.flows.analyze import analyze_experiments
    from abflow.settings import get_settings

    day1, day2 = datetime(2026, 11, 19, tzinfo=UTC), datetime(2026, 11, 20, tzinfo=UTC)
    key = ["checkout_button"]

    def stats() -> list[Any]:
        with engine.connect() as conn:
            return conn.execute(
                text(
                    "select v.metric_key, v.variant_key, v.segment, v.units, v.sum,"
                    " v.sum_squares, v.denominator_sum, v.covariate_sum,"
                    " v.covariate_sum_products from variant_stats v join analysis_runs r"
                    " using (run_id) where r.experiment_key = 'checkout_button'"
                    " and r.as_of = :a order by 1, 2, 3"
                ),
                {"a": day2},
            ).all()

    monkeypatch.setenv("ABFLOW_INCREMENTAL", "true")
    get_settings.cache_clear()
    analyze_experiments(experiment_keys=key, as_of=day1)  # first refresh: full, builds partials
    analyze_experiments(experiment_keys=key, as_of=day2)  # incremental
    incremental = stats()
    monkeypatch.setenv("ABFLOW_INCREMENTAL", "false")
    get_settings.cache_clear()
    analyze_experiments(experiment_keys=key, as_of=day2)
    full = stats()
    assert len(full) > 0
    assert [r[:4] for r in incremental] == [r[:4] for r in full]
    for a, b in zip(incremental, full, strict=True):
        for x, y in zip(a[4:], b[4:], strict=True):
            assert (x is None and y is None) or abs(x - y) <= 1e-9 * max(1.0, abs(y))
