"""abflow's events, validation records and digest as pure functions (no Prefect, no database)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from abflow.alerting import events as ev
from abflow.alerting.digest import overdue, parse_since, render_digest
from abflow.alerting.validation import describe, validation_records
from abflow.definitions import parse_experiment
from abflow.results import (
    AnalysisRunRow,
    ExperimentResult,
    HealthCheckRow,
    RecommendationRow,
    failed_run,
)

AS_OF = datetime(2026, 11, 21, tzinfo=UTC)
RUN = uuid.UUID("11111111-2222-3333-4444-555555555555")
LINK = "https://abflow.example.com/experiments/checkout"
SHIP = (
    "green beats control on purchase_rate: +12.3% (95% CI [+3.1%, +21.0%], p = 0.004)."
    " Guardrails hold. Ship it."
)


def result(
    status: str = "succeeded",
    decision: str = "ship",
    variant: str | None = "green",
    rationale: str = SHIP,
    checks: tuple[HealthCheckRow, ...] = (),
) -> ExperimentResult:
    run = AnalysisRunRow(
        run_id=RUN, experiment_key="checkout", as_of=AS_OF, flow_run_id=None, started_at=AS_OF,
        finished_at=AS_OF, status=status, message=f"{decision} {variant}",  # type: ignore[arg-type]
    )  # fmt: skip
    rec = RecommendationRow(
        run_id=RUN, experiment_key="checkout", decision=decision,  # type: ignore[arg-type]
        variant_key=variant, rationale=rationale, days_remaining=None,
    )  # fmt: skip
    return ExperimentResult(run, (), (), checks, rec)


def check(name: str, passed: bool, severity: str = "critical", **details: Any) -> HealthCheckRow:
    return HealthCheckRow(
        run_id=RUN, experiment_key="checkout", check_name=name, severity=severity,  # type: ignore[arg-type]
        passed=passed, observed=details.pop("observed", None), threshold=0.0, details=details,
    )  # fmt: skip


def names(specs: list[ev.EventSpec]) -> list[str]:
    return [s.event for s in specs]


def run_events(res: ExperimentResult, previous: ev.Previous | None = None, **kw: Any) -> list[Any]:
    args: dict[str, Any] = {"newest": True, "backfill": False, "link": LINK, **kw}
    return ev.run_events(res, previous=previous, **args)


# --- run events ---------------------------------------------------------------------------------


def test_a_succeeded_run_is_one_event_on_the_experiment_with_labels_and_a_message() -> None:
    (spec,) = run_events(result(), promotion="promoted 'green' (config v2)")
    assert spec.event == "abflow.run.succeeded"
    assert spec.resource == {
        "prefect.resource.id": "abflow.experiment.checkout",
        "prefect.resource.name": "checkout",
        "abflow.experiment": "checkout",
        "abflow.decision": "ship",
        "abflow.variant": "green",
        "abflow.run-id": str(RUN),
        "abflow.status": "succeeded",
        "abflow.backfill": "false",
    }
    assert spec.payload["subject"] == "checkout: ship green (as of 2026-11-21 00:00 UTC)"
    assert spec.payload["message"].splitlines() == [
        "checkout: ship green — green beats control on purchase_rate: +12.3% (95% CI [+3.1%,"
        " +21.0%], p = 0.004).",
        "promoted 'green' (config v2)",
        f"Report: {LINK}",
    ]
    assert spec.payload["rationale"].endswith("p = 0.004).")  # the first sentence only
    json.dumps(spec.payload)  # JSON-safe
    assert spec.id == run_events(result())[0].id  # stable: the same fact has the same id


def test_recommendation_changed_needs_a_different_previous_and_the_newest_non_backfill_run() -> (
    None
):
    keep = ev.Previous("keep_running", None, AS_OF - timedelta(days=1))
    same = ev.Previous("ship", "green", AS_OF - timedelta(days=1))
    other_variant = ev.Previous("ship", "blue", AS_OF - timedelta(days=1))
    assert names(run_events(result(), keep)) == ["abflow.run.succeeded", ev.RECOMMENDATION_CHANGED]
    assert names(run_events(result(), other_variant))[1:] == [ev.RECOMMENDATION_CHANGED]
    assert names(run_events(result(), same)) == ["abflow.run.succeeded"]
    assert names(run_events(result(), None)) == ["abflow.run.succeeded"]  # nothing to compare
    assert names(run_events(result(), keep, backfill=True)) == ["abflow.run.succeeded"]
    assert names(run_events(result(), keep, newest=False)) == ["abflow.run.succeeded"]
    changed = run_events(result(), keep)[1]
    assert changed.payload["subject"] == (
        "checkout: recommendation changed from keep_running to ship green"
    )
    assert changed.payload["previous_decision"] == "keep_running"
    assert changed.payload["message"].startswith("checkout: keep_running → ship green — green")


def test_a_flip_to_rollback_and_an_unhealthy_run() -> None:
    keep = ev.Previous("keep_running", None, AS_OF - timedelta(days=1))
    rollback = result(decision="rollback", variant="green", rationale="green hurts. Roll back.")
    assert run_events(rollback, keep)[1].payload["subject"] == (
        "checkout: recommendation changed from keep_running to rollback green"
    )
    broken = check("gx_assignments_variant_key_in_set", False, unexpected_count=3)
    unhealthy = result(
        status="unhealthy", decision="investigate", variant=None,
        rationale="Health checks failed, so no decision is safe: x. Fix the data before acting.",
        checks=(broken, check("srm", False, severity="warning")),
    )  # fmt: skip
    first, changed = run_events(unhealthy, keep)
    assert first.event == "abflow.run.unhealthy"
    assert first.resource["abflow.decision"] == "investigate"
    assert "abflow.variant" not in first.resource
    assert first.payload["failed_checks"] == ["gx_assignments_variant_key_in_set"]  # critical only
    assert first.payload["subject"] == (
        "checkout is unhealthy as of 2026-11-21 00:00 UTC: gx_assignments_variant_key_in_set"
    )
    assert changed.event == ev.RECOMMENDATION_CHANGED  # keep_running -> investigate


def test_a_failed_run_event_carries_a_redacted_one_line_error() -> None:
    failed = failed_run(
        run_id=RUN, experiment_key="checkout", as_of=AS_OF, flow_run_id=None, started_at=AS_OF,
        finished_at=AS_OF,
        message="OperationalError: connection to postgresql://abflow:s3cret@db:5432/w failed"
        " (password=hunter2)\nTraceback: secret stuff",
    )  # fmt: skip
    (spec,) = run_events(failed, ev.Previous("ship", "green", AS_OF))
    assert spec.event == "abflow.run.failed"
    text = json.dumps(spec.payload) + json.dumps(spec.resource)
    assert "s3cret" not in text and "hunter2" not in text and "Traceback" not in text
    assert spec.payload["error"] == (
        "OperationalError: connection to postgresql://***@db:5432/w failed (password=***"
    )
    assert "abflow.decision" not in spec.resource


def test_skipped_runs_send_nothing() -> None:
    assert run_events(result(status="skipped")) == []


@pytest.mark.parametrize(
    ("text", "first"),
    [
        (SHIP, "green beats control on purchase_rate: +12.3% (95% CI [+3.1%, +21.0%], p = 0.004)."),
        ("One sentence without a stop", "One sentence without a stop"),
        ("p = 0.04 at 3.5 days. Next", "p = 0.04 at 3.5 days."),
        (None, ""),
    ],
)
def test_first_sentence(text: str | None, first: str) -> None:
    assert ev.first_sentence(text) == first


# --- config changes -----------------------------------------------------------------------------


def row(action: str, actor: str = "alice", variant: str | None = "green", **kw: Any) -> dict:
    base = {
        "id": 7, "experiment_key": "checkout", "variant_key": variant, "action": action,
        "actor": actor, "run_id": None, "reason": "brand review", "version": 3,
    }  # fmt: skip
    return {**base, **kw}


REC = {"decision": "ship", "variant_key": "green", "rationale": SHIP, "run_id": RUN}


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([row("promote", actor="auto", run_id=RUN)], [ev.PROMOTED]),
        ([row("promote")], [ev.PROMOTED, ev.PINNED]),  # a person's promote pins
        ([row("rollback")], [ev.ROLLED_BACK, ev.PINNED]),
        ([row("pin")], [ev.PINNED]),
        ([row("unpin")], [ev.UNPINNED]),
        ([row("reweight", actor="auto", variant=None)], [ev.REWEIGHTED]),
    ],
)
def test_each_promotions_row_becomes_its_event(rows: list[dict], expected: list[str]) -> None:
    assert names(ev.promotion_events(rows, recommendation=REC, link=LINK)) == expected


def test_promotion_messages_name_the_experiment_decision_rationale_and_link() -> None:
    (auto,) = ev.promotion_events(
        [row("promote", actor="auto", run_id=RUN, reason=SHIP, version=2)],
        recommendation=REC,
        link=LINK,
    )
    assert auto.payload["subject"] == "checkout: 'green' promoted automatically (config v2)"
    assert auto.payload["message"].splitlines() == [
        "checkout: 'green' promoted automatically (config v2) — green beats control on"
        " purchase_rate: +12.3% (95% CI [+3.1%, +21.0%], p = 0.004).",
        "Latest recommendation: ship green",
        f"Report: {LINK}",
    ]
    assert auto.resource["abflow.run-id"] == str(RUN)
    manual, pinned = ev.promotion_events(
        [row("promote", variant="control")], recommendation=REC, link=LINK
    )
    assert manual.payload["message"].splitlines()[:2] == [
        "checkout: 'control' promoted by alice (config v3) — brand review",
        "Latest recommendation: ship green — green beats control on purchase_rate: +12.3% (95% CI"
        " [+3.1%, +21.0%], p = 0.004).",
    ]
    assert pinned.payload["subject"] == "checkout: config pinned by alice (config v3)"
    assert manual.id != pinned.id


# --- validation records -------------------------------------------------------------------------


def test_validation_records_say_what_was_checked_without_raw_values() -> None:
    checks = [
        check("srm", True, observed=0.4),
        check(
            "gx_assignments_variant_key_in_set", False,
            expectation="expect_column_values_to_be_in_set", column="variant_key",
            unexpected_count=3, element_count=900, mostly=1.0, sample=["ghost"],
        ),
        check("gx_events_value_not_null", False, severity="warning",
              expectation="expect_column_values_to_not_be_null", column="value",
              unexpected_count=1, mostly=0.99),
        check("gx_events_occurred_at_not_null", False, expectation="x", column="occurred_at",
              error="ProgrammingError: relation does not exist"),
    ]  # fmt: skip
    records = validation_records(checks)
    assert [(r["suite"], r["check"], r["result"]) for r in records] == [
        ("assignments", "variant_key_in_set", "FAILED"),
        ("events", "occurred_at_not_null", "FAILED"),
        ("events", "value_not_null", "warning"),
        ("health", "srm", "passed"),
    ]
    assert records[0]["what was checked"] == (
        "assignments.variant_key: variant key in set — variant_key only takes configured values"
    )
    assert records[0]["unexpected"] == 3
    assert records[2]["what was checked"].endswith("(in at least 99% of rows)")
    assert records[1]["observed"] == "error: ProgrammingError: relation does not exist"
    assert records[3]["observed"] == 0.4
    assert "ghost" not in json.dumps(records)
    assert describe("srm[country=DE]", {}).endswith("in segment country=DE")


# --- digest -------------------------------------------------------------------------------------


def test_parse_since() -> None:
    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    assert parse_since("24h", now) == now - timedelta(hours=24)
    assert parse_since("7d", now) == now - timedelta(days=7)
    assert parse_since("2026-11-01", now) == datetime(2026, 11, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="--since"):
        parse_since("yesterday", now)


def test_digest_lists_changes_unhealthy_winners_and_overdue_with_links() -> None:
    now = datetime(2026, 11, 30, tzinfo=UTC)
    rows = {
        "changes": [
            {"experiment_key": "checkout", "as_of": AS_OF, "prev_decision": "keep_running",
             "prev_variant": None, "decision": "ship", "variant_key": "green", "rationale": SHIP},
        ],
        "unhealthy": [{"experiment_key": "followup", "as_of": AS_OF,
                       "message": "critical checks failed: srm"}],
        "failed": [{"experiment_key": "enrich", "as_of": AS_OF,
                    "message": "boom postgresql://u:pw@h/db"}],
        "ready": [
            {"experiment_key": "checkout", "as_of": AS_OF, "variant_key": "green",
             "rationale": SHIP, "promoted_variant_key": "green", "pinned": False},
            {"experiment_key": "pricing", "as_of": AS_OF, "variant_key": "b",
             "rationale": "b wins.", "promoted_variant_key": None, "pinned": True,
             "pinned_by": "alice"},
        ],
        "promotions": [
            {"experiment_key": "checkout", "variant_key": "green", "action": "promote",
             "actor": "auto", "version": 2, "at": now, "reason": SHIP},
            {"experiment_key": "pricing", "variant_key": None, "action": "unpin",
             "actor": "bob", "version": 5, "at": now, "reason": None},
        ],
    }  # fmt: skip
    exp = parse_experiment(
        {
            "key": "old_test", "name": "old", "status": "running",
            "start_at": "2026-10-01T00:00:00Z",
            "variants": [{"key": "a", "weight": 0.5, "control": True}, {"key": "b", "weight": 0.5}],
            "metrics": [{"key": "m", "kind": "proportion", "event": "x", "role": "primary"}],
            "decision": {"max_runtime_days": 28},
        }
    )  # fmt: skip
    md = render_digest(
        rows, overdue([exp], now), since=now - timedelta(days=30), until=now,
        link=lambda k: f"https://abflow.example.com/experiments/{k}",
    )  # fmt: skip
    assert "## Decisions that changed (1)" in md
    url = "https://abflow.example.com/experiments"
    assert f"- [checkout]({url}/checkout): keep\\_running → **ship green**" in md
    assert "## Became unhealthy or failed (2)" in md and "pw@" not in md
    assert "**promoted 'green'** automatically (config v2" in md
    assert "**ready to ship 'b'** (as of 2026-11-21 00:00 UTC; config pinned by alice)" in md
    assert "ready to ship 'green'" not in md  # already served
    assert "## Other config changes (1)" in md and "unpin by bob (config v5" in md
    assert "(`decision.max_runtime_days`: 28)" in md
    assert f"[old\\_test]({url}/old_test): running 60.0 days" in md
    empty = render_digest({}, [], since=now, until=now, link=lambda k: f"abflow report {k}")
    assert empty.count("None.") == 5
