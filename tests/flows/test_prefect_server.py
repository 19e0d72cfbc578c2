"""A real `prefect server`, the served deployments, and a backfill triggered as the UI does.

The session's shared `prefect server start` and `abflow.flows.serve.serve_all()` subprocesses
(tests/flows/prefect_stack.py) serve the deployments; the test creates a backfill flow run with
custom parameters through `POST /api/deployments/{id}/create_flow_run` (the request body of the
UI's custom-run form), waits for it, and checks the warehouse rows and the artifacts through the
API.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, text

from tests.flows.prefect_stack import (
    SERVER_MARKS,
    PrefectStack,
    deployment,
    log_tail,
    post,
    wait_terminal,
)

pytestmark = SERVER_MARKS


def _ui_custom_run(parameters: dict[str, Any], deployment: dict[str, Any]) -> dict[str, Any]:
    """The body the UI's custom-run form (FlowRunCreateFormV2) posts, in the API's field names."""
    return {
        "name": "abflow-backfill-from-ui",
        "parameters": parameters,
        "state": {
            "type": "SCHEDULED",
            "message": "",
            "state_details": {"scheduled_time": None},
        },
        "tags": deployment["tags"],
        "work_queue_name": deployment["work_queue_name"],
        "empirical_policy": {"retries": None, "retry_delay": None},
        "job_variables": {},
        "enforce_parameter_schema": deployment["enforce_parameter_schema"],
    }


def _check_served_deployments(stack: PrefectStack) -> dict[str, Any]:
    """serve() registered the deployments like prefect.yaml: schedule, schema, enforcement."""
    analyze = deployment(stack, "analyze-experiments", "analyze")
    schedules = sorted((s["schedule"].get("cron"), s["parameters"]) for s in analyze["schedules"])
    assert schedules == [("15 6 * * 0", {"full_refresh": True}), ("15 6 * * 1-6", {})]
    backfill = deployment(stack, "backfill-experiments", "backfill")
    assert backfill["enforce_parameter_schema"] is True
    schema = backfill["parameter_openapi_schema"]
    assert schema["properties"]["start"]["format"] == "date"
    assert schema["properties"]["end"]["format"] == "date"
    assert set(schema["required"]) == {"start", "end"}
    return backfill


def _check_bad_parameters_rejected(stack: PrefectStack, dep: dict[str, Any]) -> None:
    """The server itself (not the UI form) refuses parameters that violate the schema.

    Prefect validates with JSON Schema 2020-12, where `format` is only an annotation: a
    non-date string for a `date` parameter passes unless the schema also has a `pattern`
    (then it is rejected like the rest). Probe runs are scheduled far in the future so that
    the runner never picks up one that the server accepts; such a run is deleted at once.
    """
    # abflow/flows/backfill.py adds a pattern to the date parameters, so non-dates are refused too.
    assert "pattern" in dep["parameter_openapi_schema"]["properties"]["start"]
    far = {"type": "SCHEDULED", "state_details": {"scheduled_time": "2099-01-01T00:00:00Z"}}
    cases: list[tuple[dict[str, Any], bool]] = [
        ({"start": "2026-11-05"}, True),  # `end` is required
        ({"start": "2026-11-05", "end": "2026-11-07", "experiments": "followup_timing"}, True),
        ({"start": "2026-11-05", "end": 7}, True),
        ({"start": "not-a-date", "end": "2026-11-07"}, True),
    ]
    for params, rejected in cases:
        # No per-run override: the deployment's own enforce_parameter_schema decides.
        r = post(
            stack.client,
            f"/deployments/{dep['id']}/create_flow_run",
            json={"parameters": params, "state": far},
        )
        if rejected:
            assert r.status_code in (409, 422), (params, r.status_code, r.text)
            assert "Validation failed" in r.text
        else:
            assert r.status_code == 201, (params, r.status_code, r.text)
            stack.client.delete(f"/flow_runs/{r.json()['id']}").raise_for_status()
    r = post(stack.client, "/flow_runs/count", json={"deployments": {"id": {"any_": [dep["id"]]}}})
    assert r.json() == 0


def test_ui_custom_backfill_run_on_a_real_server(
    prefect_stack: PrefectStack, engine: Engine, demo_loaded: dict[str, Any]
) -> None:
    """One test, so that `-n 2` never starts a second server for this module."""
    dep = _check_served_deployments(prefect_stack)
    _check_bad_parameters_rejected(prefect_stack, dep)

    params = {"start": "2026-11-05", "end": "2026-11-07", "experiments": ["followup_timing"]}
    client = prefect_stack.client
    r = post(client, f"/deployments/{dep['id']}/create_flow_run", json=_ui_custom_run(params, dep))
    assert r.status_code == 201, r.text
    run = r.json()
    assert run["parameters"] == params and run["state"]["type"] == "SCHEDULED"
    fr_id = run["id"]
    state = wait_terminal(prefect_stack, fr_id)
    assert state["type"] == "COMPLETED", (state, log_tail(prefect_stack.home / "serve.log"))

    expected = [datetime(2026, 11, d, tzinfo=UTC) for d in (6, 7, 8)]
    with engine.connect() as conn:
        runs = conn.execute(
            text(
                "select as_of, status,"
                " (select count(*) from insights i where i.run_id = r.run_id) as insights"
                " from analysis_runs r where experiment_key = 'followup_timing'"
                " and flow_run_id = :fr order by as_of"
            ),
            {"fr": fr_id},
        ).all()
        total = conn.execute(
            text(
                "select count(*) from analysis_runs where experiment_key = 'followup_timing'"
                " and as_of = any(:a)"
            ),
            {"a": expected},
        ).scalar()
    assert [r.as_of for r in runs] == expected  # end of each day = next midnight UTC
    assert all(r.status == "succeeded" and r.insights > 0 for r in runs), runs
    assert total == 3  # exactly one row per as_of

    arts = post(
        client,
        "/artifacts/filter",
        json={"artifacts": {"flow_run_id": {"any_": [fr_id]}}, "sort": "CREATED_DESC"},
    )
    arts.raise_for_status()
    by_key: dict[str, list[str]] = {}
    for a in arts.json():
        by_key.setdefault(a["key"], []).append(a["type"])
    # One version of each artifact per day, under stable keys.
    assert by_key == {
        "abflow-followup-timing-results": ["table"] * 3,
        "abflow-followup-timing-summary": ["markdown"] * 3,
        "abflow-followup-timing-validation": ["table"] * 3,
    }
