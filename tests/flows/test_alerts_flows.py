"""The flows send abflow's events (prefect_test_harness; emit_event captured), publish the
validation table and the digest; the report shows what each check checked.

Delivery to a real server, the automations and the webhook are tests/flows/test_alerts_server.py.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from abflow.cli import app
from abflow.settings import Settings
from tests.conftest import DEMO_AS_OF, copy_experiment

runner = CliRunner()


class Captured:
    """emit_event stand-in: keeps what abflow.ops.events would send."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, **kwargs: Any) -> dict[str, Any]:
        self.events.append(kwargs)
        return kwargs

    def take(self, key: str | None = None) -> list[tuple[str, dict[str, str], dict[str, Any]]]:
        """(name, resource, payload) sent since the last take, for one experiment."""
        mine = [e for e in self.events if key is None or e["resource"]["abflow.experiment"] == key]
        self.events = [e for e in self.events if e not in mine]
        return [(e["event"], e["resource"], e["payload"]) for e in mine]


@pytest.fixture()
def sent(monkeypatch: pytest.MonkeyPatch) -> Captured:
    import abflow.ops.events

    captured = Captured()
    monkeypatch.setattr(abflow.ops.events, "emit_event", captured)
    return captured


def _names(events: list[tuple[str, dict[str, str], dict[str, Any]]]) -> list[str]:
    return [name for name, _, _ in events]


def stop_experiment(engine: Engine, key: str) -> None:
    """Keep a test's copy out of later 'all running experiments' runs in the session."""
    with engine.begin() as conn:
        conn.execute(
            text("update experiments set status = 'stopped' where experiment_key = :k"), {"k": key}
        )


def add_ghost_exposures(engine: Engine, key: str, units: int = 4) -> None:
    """Exposures to a variant the definition does not have: a critical GX failure."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "insert into assignments (experiment_key, unit_id, variant_key, assigned_at)"
                " select :k, 'ghost-' || g, 'ghost', :t from generate_series(1, :n) g"
            ),
            {"k": key, "t": DEMO_AS_OF - timedelta(days=2), "n": units},
        )


def test_runs_backfills_and_manual_changes_send_their_events(
    prefect_harness: None,
    abflow_env: Settings,
    engine: Engine,
    demo_loaded: dict[str, Any],
    sent: Captured,
) -> None:
    from abflow.flows.analyze import analyze_experiments
    from abflow.flows.backfill import backfill_experiments
    from abflow.flows.promote import promote_flow, rollback_flow, unpin_flow

    e = copy_experiment(engine, demo_loaded["experiments"]["checkout_button"], "alerts_seq")
    early = DEMO_AS_OF - timedelta(days=12)
    (first,) = analyze_experiments(experiment_keys=[e.key], as_of=early)
    assert first["decision"] == "keep_running", first
    ((name, res, payload),) = sent.take(e.key)  # nothing to compare with yet
    assert name == "abflow.run.succeeded"
    assert res["abflow.decision"] == "keep_running" and res["abflow.run-id"] == first["run_id"]
    assert res["abflow.backfill"] == "false"

    analyze_experiments(experiment_keys=[e.key], as_of=DEMO_AS_OF)
    events = sent.take(e.key)
    assert _names(events) == [
        "abflow.run.succeeded",
        "abflow.recommendation.changed",
        "abflow.experiment.promoted",
    ]
    changed, promoted = events[1], events[2]
    assert (
        changed[2]["subject"]
        == "alerts_seq: recommendation changed from keep_running to ship green"
    )
    assert promoted[1]["abflow.variant"] == "green" and promoted[1]["abflow.actor"] == "auto"
    assert promoted[2]["subject"] == "alerts_seq: 'green' promoted automatically (config v2)"
    assert promoted[2]["message"].startswith(
        "alerts_seq: 'green' promoted automatically (config v2) — green"
    )
    assert "Report: " in promoted[2]["message"]

    # A backfill of past days: run events only, never a changed recommendation or a promotion.
    backfill_experiments(start=date(2026, 11, 12), end=date(2026, 11, 14), experiments=[e.key])
    events = sent.take(e.key)
    assert _names(events) == ["abflow.run.succeeded"] * 3
    assert {r["abflow.backfill"] for _, r, _ in events} == {"true"}

    # People: the promote/rollback/unpin flows send the config changes they made.
    promote_flow(e.key, "control", reason="brand review", actor="alice")
    events = sent.take(e.key)
    assert _names(events) == ["abflow.experiment.promoted", "abflow.experiment.pinned"]
    assert events[0][2]["message"].splitlines()[0] == (
        "alerts_seq: 'control' promoted by alice (config v3) — brand review"
    )
    rollback_flow(e.key, actor="alice")
    assert _names(sent.take(e.key)) == ["abflow.experiment.rolled_back", "abflow.experiment.pinned"]
    unpin_flow(e.key, actor="bob")
    ((name, res, payload),) = sent.take(e.key)
    assert (name, res["abflow.actor"], payload["version"]) == (
        "abflow.experiment.unpinned",
        "bob",
        5,
    )
    unpin_flow(e.key, actor="bob")  # not pinned: nothing changed, nothing sent
    assert sent.take(e.key) == []
    stop_experiment(engine, e.key)


def test_failures_and_unhealthy_runs_send_their_events(
    prefect_harness: None,
    abflow_env: Settings,
    engine: Engine,
    demo_loaded: dict[str, Any],
    sent: Captured,
    tmp_path: Path,
) -> None:
    from abflow.definitions import parse_experiment
    from abflow.flows.analyze import analyze_experiments
    from abflow.flows.backfill import backfill_experiments
    from abflow.warehouse.experiments_repo import upsert_experiments

    broken = parse_experiment(
        {
            "key": "alerts_broken", "name": "broken", "status": "running",
            "start_at": "2026-11-01T00:00:00Z",
            "variants": [{"key": "a", "weight": 0.5, "control": True}, {"key": "b", "weight": 0.5}],
            "metrics": [{"key": "m", "kind": "proportion", "event": "x", "role": "primary"}],
        }
    )  # fmt: skip
    copy_experiment(engine, demo_loaded["experiments"]["checkout_button"], "alerts_sick")
    with engine.begin() as conn:
        upsert_experiments(conn, [broken])
        conn.execute(
            text(
                "update experiments set definition = definition - 'variants'"
                " where experiment_key = 'alerts_broken'"
            )
        )
    add_ghost_exposures(engine, "alerts_sick")
    summaries = analyze_experiments(
        experiment_keys=["alerts_broken", "alerts_sick"], as_of=DEMO_AS_OF
    )
    assert [s["status"] for s in summaries] == ["failed", "unhealthy"]
    ((name, res, payload),) = sent.take("alerts_broken")
    assert name == "abflow.run.failed" and res["abflow.backfill"] == "false"
    assert payload["error"].startswith("invalid definition: ")
    events = sent.take("alerts_sick")
    assert _names(events) == ["abflow.run.unhealthy"]
    _, res, payload = events[0]
    assert res["abflow.decision"] == "investigate"
    assert "gx_assignments_variant_key_in_set" in payload["failed_checks"]
    assert payload["subject"].startswith("alerts_sick is unhealthy as of 2026-11-21 00:00 UTC: ")

    backfill_experiments(
        start=date(2026, 11, 19), end=date(2026, 11, 19), experiments=["alerts_broken"]
    )
    ((name, res, _),) = sent.take("alerts_broken")
    assert (name, res["abflow.backfill"]) == ("abflow.run.failed", "true")

    # The validation result is kept: a table artifact per run and the report's health section.
    import anyio
    from prefect import get_client

    async def validation_table() -> list[dict[str, Any]]:
        async with get_client() as client:
            arts = await client.read_artifacts()
        found = [a for a in arts if a.key == "abflow-alerts-sick-validation"]
        assert found, [a.key for a in arts]
        data = found[0].data
        return json.loads(data) if isinstance(data, str) else data  # type: ignore[return-value]

    records = anyio.run(validation_table)
    row = next(r for r in records if r["check"] == "variant_key_in_set")
    assert (row["suite"], row["result"], row["severity"], row["unexpected"]) == (
        "assignments", "FAILED", "critical", 4,
    )  # fmt: skip
    assert row["what was checked"].startswith("assignments.variant_key: variant key in set")
    assert records[0]["result"] == "FAILED"  # failures first
    res_cli = runner.invoke(app, ["report", "alerts_sick", "--out", str(tmp_path / "r.html")])
    assert res_cli.exit_code == 0, res_cli.output
    html = (tmp_path / "r.html").read_text()
    assert "variant_key only takes configured values" in html and "4 unexpected row(s)" in html
    stop_experiment(engine, "alerts_sick")
    stop_experiment(engine, "alerts_broken")


def test_the_daily_digest_artifact_and_cli(
    prefect_harness: None,
    abflow_env: Settings,
    engine: Engine,
    demo_loaded: dict[str, Any],
    sent: Captured,
) -> None:
    from abflow.flows.analyze import analyze_experiments

    e = copy_experiment(engine, demo_loaded["experiments"]["checkout_button"], "alerts_digest")
    analyze_experiments(experiment_keys=[e.key], as_of=DEMO_AS_OF - timedelta(days=12))
    analyze_experiments(experiment_keys=[e.key], as_of=DEMO_AS_OF)
    res = runner.invoke(app, ["digest", "--since", "2026-11-20", "--until", "2026-11-22"])
    assert res.exit_code == 0, res.output
    md = res.output
    assert md.startswith("# abflow digest — 2026-11-20 00:00 UTC to 2026-11-22 00:00 UTC")
    report = "`abflow report alerts_digest --out alerts_digest.html`"
    assert f"alerts\\_digest ({report}): keep\\_running → **ship green**" in md
    res = runner.invoke(app, ["digest", "--since", "soon"])
    assert res.exit_code == 1 and res.output.startswith("error: --since")

    import anyio
    from prefect import get_client

    async def digest() -> str:
        async with get_client() as client:
            arts = await client.read_artifacts()
        found = sorted((a for a in arts if a.key == "abflow-digest"), key=lambda a: a.created)
        return str(found[-1].data)

    text_md = anyio.run(digest)
    assert "## Decisions that changed" in text_md and "alerts_digest" in text_md
    stop_experiment(engine, e.key)
