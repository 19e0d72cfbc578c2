"""Promotions respect people, through the real flows (prefect_test_harness) and the CLI verbs.

The analysis runs are `analyze_experiments` / `backfill_experiments` flow runs; the manual steps
are `abflow promote|rollback|unpin` and their Prefect flows. Each test has its own copy of the
demo's checkout_button (its analysis as of the demo date ships green).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from abflow.cli import app
from abflow.definitions import Experiment
from abflow.settings import Settings
from tests.conftest import DEMO_AS_OF, copy_experiment
from tests.integration.test_pins import audit, served

runner = CliRunner()


def _analyze(key: str, as_of: datetime) -> dict[str, Any]:
    from abflow.flows.analyze import analyze_experiments

    (summary,) = analyze_experiments(experiment_keys=[key], as_of=as_of)
    assert (summary["status"], summary["decision"], summary["variant_key"]) == (
        "succeeded", "ship", "green",
    ), summary  # fmt: skip
    return summary


def test_promote_run_rollback_rollback_unpin_run(
    prefect_harness: None, abflow_env: Settings, engine: Engine, demo_loaded: dict[str, Any]
) -> None:
    """The issue's sequence, with the config version apps see after each step."""
    e = copy_experiment(engine, demo_loaded["experiments"]["checkout_button"], "pin_sequence")
    trace: list[tuple[str, str | None, int, bool, str]] = []

    def step(label: str, outcome: str) -> None:
        trace.append((label, *served(engine, e.key), outcome))

    def cli(*args: str) -> str:
        res = runner.invoke(app, [*args, "--actor", "alice"])
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        assert len(lines) == 1, res.output
        step("abflow " + " ".join(args[:1] + args[2:]), f"exit {res.exit_code}: {lines[0]}")
        return lines[0]

    step("start", "demo definition applied")
    summary = _analyze(e.key, DEMO_AS_OF - timedelta(hours=2))
    step("run (flow)", f"ship green; {summary['promotion']}")
    cli("promote", e.key, "control", "--reason", "brand review")
    summary = _analyze(e.key, DEMO_AS_OF - timedelta(hours=1))
    step("run (flow)", f"ship green; {summary['promotion']}")
    cli("rollback", e.key)
    cli("rollback", e.key)
    cli("unpin", e.key)
    summary = _analyze(e.key, DEMO_AS_OF)
    step("run (flow)", f"ship green; {summary['promotion']}")
    print()  # the trace, for the closing note (pytest -s)
    for label, variant, version, pinned, outcome in trace:
        pin = "pinned" if pinned else "rules"
        print(f"{label:<32} v{version} {variant or 'weighted split':<15} {pin:<7} {outcome}")
    assert [(t[1], t[2], t[3]) for t in trace] == [
        (None, 1, False),  # start
        ("green", 2, False),  # the rules promote the ship
        ("control", 3, True),  # a person promotes control: pinned
        ("control", 3, True),  # the next run ships green: not promoted
        ("green", 4, True),  # rollback undoes the manual promote
        (None, 5, True),  # rollback undoes the rules' promotion: the weighted split
        (None, 6, False),  # unpin hands control back
        ("green", 7, False),  # the next run promotes again
    ]
    assert trace[3][4].startswith("ship green; not promoted: the config is pinned by alice")
    assert audit(engine, e.key) == [
        ("promote", "green", "auto", 2),
        ("promote", "control", "alice", 3),
        ("rollback", "control", "alice", 4),
        ("rollback", "green", "alice", 5),
        ("unpin", None, "alice", 6),
        ("promote", "green", "auto", 7),
    ]


def test_a_backfill_flow_never_touches_the_config(
    prefect_harness: None, abflow_env: Settings, engine: Engine, demo_loaded: dict[str, Any]
) -> None:
    """Even when the newest run failed and the backfilled day ships: results yes, config no."""
    from abflow.flows.backfill import backfill_experiments
    from abflow.results import failed_run
    from abflow.warehouse import writer

    e = copy_experiment(engine, demo_loaded["experiments"]["checkout_button"], "pin_backfill")
    newest = DEMO_AS_OF + timedelta(days=2)
    with engine.begin() as conn:
        writer.record_failed_run(
            conn,
            failed_run(
                run_id=uuid.uuid4(), experiment_key=e.key, as_of=newest,
                flow_run_id=None, started_at=newest, finished_at=newest, message="boom",
            ),
        )  # fmt: skip
    # The day ending at the demo's as_of ships green.
    out = backfill_experiments(
        start=date(2026, 11, 20), end=date(2026, 11, 20), experiments=[e.key]
    )
    assert [(s["status"], s["decision"], s["promotion"]) for s in out] == [
        ("succeeded", "ship", "not promoted: backfills never change experiment_config")
    ]
    assert served(engine, e.key) == (None, 1, False) and audit(engine, e.key) == []


def test_the_flows_refuse_to_analyse_the_future(
    prefect_harness: None, abflow_env: Settings, engine: Engine, demo_loaded: dict[str, Any]
) -> None:
    """What a Prefect UI run with a 2099 as_of or end does: the flow run fails, nothing written."""
    from abflow.flows.analyze import analyze_experiments
    from abflow.flows.backfill import backfill_experiments

    def runs() -> int:
        with engine.connect() as conn:
            return int(conn.execute(text("select count(*) from analysis_runs")).scalar_one())

    before = runs()
    with pytest.raises(ValueError, match=r"^as_of 2099-01-01 00:00 UTC is in the future"):
        analyze_experiments(experiment_keys=["checkout_button"], as_of=datetime(2099, 1, 1))
    with pytest.raises(ValueError, match=r"^end 2099-01-01: that day is not over until"):
        backfill_experiments(start=date(2098, 12, 31), end=date(2099, 1, 1))
    assert runs() == before


def test_promote_rollback_and_unpin_flows_follow_the_same_rules(
    prefect_harness: None, abflow_env: Settings, engine: Engine, demo_loaded: dict[str, Any]
) -> None:
    from abflow.flows.promote import promote_flow, rollback_flow, unpin_flow
    from abflow.warehouse.promotion import NothingToRollBack, PromotionRefused

    source: Experiment = demo_loaded["experiments"]["checkout_button"]
    e = copy_experiment(engine, source, "pin_flows")
    with pytest.raises(PromotionRefused, match="it has no analysis run yet"):
        promote_flow(experiment_key=e.key, variant_key="green", reason="no data needed")
    with pytest.raises(PromotionRefused, match="--force needs --reason"):
        promote_flow(experiment_key=e.key, variant_key="green", force=True)
    msg = promote_flow(
        experiment_key=e.key, variant_key="green", reason="launch", force=True, actor="ui-user"
    )
    assert msg.startswith("promoted 'green' and pinned (config v2)")
    assert rollback_flow(experiment_key=e.key).startswith(
        "rolled back 'green' to the weighted split and pinned (config v3)"
    )
    with pytest.raises(NothingToRollBack, match="nothing to roll back"):
        rollback_flow(experiment_key=e.key)
    assert unpin_flow(experiment_key=e.key).startswith("unpinned (config v4; pinned by prefect-ui")
    assert audit(engine, e.key) == [
        ("promote", "green", "ui-user", 2),
        ("rollback", "green", "prefect-ui", 3),
        ("unpin", None, "prefect-ui", 4),
    ]
