"""Promotion: auto-promotion once across reruns, refusal when unhealthy, rollback restores."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, text

from abflow.results import CheckOutcome
from abflow.settings import Settings
from abflow.warehouse import writer
from abflow.warehouse.promotion import (
    PromotionRefused,
    apply_run_outcome,
    promote,
    rollback,
    unpin,
)
from tests.conftest import analyse


def _run(engine: Engine, e: Any, checks: list[CheckOutcome] | None = None) -> Any:
    return analyse(engine, e, checks=checks)


def _write_and_promote(engine: Engine, result: Any, e: Any) -> str | None:
    """What abflow.tasks.warehouse.write_results does, without Prefect."""
    with engine.begin() as conn:
        writer.lock_experiment(conn, result.run.experiment_key, 10)
        writer.write_result(conn, result)
        return apply_run_outcome(conn, e, result)


def _config(engine: Engine, key: str) -> dict[str, Any]:
    with engine.connect() as conn:
        cfg = dict(
            conn.execute(
                text("select * from experiment_config where experiment_key = :k"), {"k": key}
            )
            .mappings()
            .one()
        )
        cfg["audit"] = conn.execute(
            text(
                "select action, variant_key, actor from promotions where experiment_key = :k"
                " order by id"
            ),
            {"k": key},
        ).all()
    return cfg


def test_auto_promotion_happens_exactly_once(
    engine: Engine, settings: Settings, demo_loaded: dict[str, Any]
) -> None:
    e = demo_loaded["experiments"]["checkout_button"]
    assert e.decision.auto_promote
    # Another test (the flow test) may have auto-promoted already: start from a clean slate.
    while _config(engine, e.key)["promoted_variant_key"]:
        with engine.begin() as conn:
            rollback(conn, e.key, actor="test-setup", reason="reset")
    with engine.begin() as conn:
        unpin(conn, e.key, actor="test-setup", reason="reset")
    start = _config(engine, e.key)
    r1 = _run(engine, e)
    assert r1.recommendation.decision == "ship" and r1.recommendation.variant_key == "green"
    assert (_write_and_promote(engine, r1, e) or "").startswith("promoted 'green'")
    # rerun: same decision, no second promotion
    assert _write_and_promote(engine, _run(engine, e), e) == "'green' is already promoted"
    cfg = _config(engine, e.key)
    assert cfg["promoted_variant_key"] == "green"
    assert cfg["promoted_config"] == {"colour": "green"}
    assert cfg["version"] == start["version"] + 1
    promotes = [a for a in cfg["audit"] if a.action == "promote"]
    assert promotes[-1] == ("promote", "green", "auto")
    assert len(promotes) == len([a for a in start["audit"] if a.action == "promote"]) + 1

    out = None
    with engine.begin() as conn:
        out = rollback(conn, e.key, actor="tester", reason="regression seen in support tickets")
    cfg = _config(engine, e.key)
    assert out.changed and cfg["promoted_variant_key"] is None and cfg["promoted_config"] is None
    assert cfg["version"] == start["version"] + 2
    assert cfg["variants"] == start["variants"]
    assert cfg["audit"][-1] == ("rollback", "green", "tester")
    assert len(cfg["audit"]) == len(start["audit"]) + 2
    assert cfg["pinned"] and cfg["pinned_by"] == "tester"  # a manual rollback pins
    with engine.begin() as conn:
        unpin(conn, e.key, actor="tester", reason="hand back to the rules")


def test_srm_blocks_auto_promotion_and_manual_promotion(engine: Engine) -> None:
    """A treatment that 'wins' under a broken 1000:700 split is investigated, never promoted."""
    from abflow.definitions import parse_experiment
    from abflow.warehouse.experiments_repo import upsert_experiments

    e = parse_experiment(
        {
            "key": "srm_broken",
            "name": "SRM",
            "status": "running",
            "start_at": "2026-11-01T00:00:00Z",
            "variants": [
                {"key": "control", "weight": 0.5, "control": True},
                {"key": "b", "weight": 0.5},
            ],
            "metrics": [{"key": "conv", "kind": "proportion", "event": "buy", "role": "primary"}],
            "decision": {"auto_promote": True, "min_runtime_days": 1},
        }
    )
    with engine.begin() as conn:
        upsert_experiments(conn, [e])
        conn.execute(
            text(
                "insert into assignments (experiment_key, unit_id, variant_key, assigned_at)"
                " select 'srm_broken', 's' || g, case when g <= 1000 then 'control' else 'b' end,"
                " timestamptz '2026-11-02' + g * interval '10 minutes'"
                " from generate_series(1, 1700) g"
            )
        )
        # control converts 10%, b converts 30%: a huge 'win' on a broken split
        conn.execute(
            text(
                "insert into events (unit_id, event_name, value, occurred_at)"
                " select 's' || g, 'buy', null,"
                " timestamptz '2026-11-02' + g * interval '10 minutes'"
                " + interval '1 hour' from generate_series(1, 1700) g"
                " where (g <= 1000 and g % 10 = 0) or (g > 1000 and g % 10 < 3)"
            )
        )
    result = _run(engine, e)
    srm = next(c for c in result.health_checks if c.check_name == "srm")
    assert not srm.passed and srm.severity == "critical" and srm.observed < 1e-6
    assert srm.details["counts"] == {"control": 1000, "b": 700}
    assert result.run.status == "unhealthy"
    assert result.recommendation.decision == "investigate"
    assert "sample ratio mismatch" in result.recommendation.rationale
    primary = next(i for i in result.insights if i.segment == "all")
    assert primary.significant  # the statistics are still written, flagged by the run status
    assert _write_and_promote(engine, result, e) is None
    before = _config(engine, e.key)
    assert before["promoted_variant_key"] is None and before["audit"] == []
    with pytest.raises(PromotionRefused, match="unhealthy"), engine.begin() as conn:
        promote(conn, e.key, "b", actor="tester", reason="try")
    assert _config(engine, e.key) == before
