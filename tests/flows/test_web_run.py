"""POST /api/experiments/{key}/run for real: the flow in-process, and a deployment's flow run."""

from __future__ import annotations

import time
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from abflow.settings import Settings
from abflow.warehouse.web_tokens import create_token
from abflow.web.runs import RunLauncher, _analyze_in_process
from tests.conftest import copy_experiment
from tests.web.conftest import auth, make_app


def _token(engine: Engine) -> str:
    with engine.begin() as conn:
        return create_token(conn, f"runner-{time.monotonic_ns()}", "write")


def test_run_in_process_writes_an_analysis(
    prefect_harness: None, abflow_env: Settings, engine: Engine, demo_loaded: dict[str, Any]
) -> None:
    e = copy_experiment(engine, demo_loaded["experiments"]["followup_timing"], "web_run_inproc")
    runs = RunLauncher("analyze-experiments/analyze", analyze=_analyze_in_process,
                       server_url=lambda: None)  # fmt: skip
    app = make_app(abflow_env, engine, runs=runs)
    token = _token(engine)
    with TestClient(app) as c:
        r = c.post(f"/api/experiments/{e.key}/run", headers=auth(token))
        assert r.status_code == 202, r.text
        job = r.json()["run"]
        assert job["mode"] == "in-process"
        runs.shutdown()  # waits for the flow run
        state = c.get(f"/api/runs/{job['id']}", headers=auth(token)).json()
    assert state["state"] == "completed", state
    assert [s["experiment_key"] for s in state["result"]] == [e.key]
    with engine.connect() as conn:
        n = conn.execute(
            text("select count(*) from analysis_runs where experiment_key = :k"), {"k": e.key}
        ).scalar_one()
    assert n == 1


def test_run_through_the_deployment_creates_a_flow_run(
    prefect_harness: None, abflow_env: Settings, engine: Engine, demo_loaded: dict[str, Any]
) -> None:
    from prefect import get_client

    from abflow.flows.analyze import analyze_experiments

    # _sync: another test's Playwright may have left an event loop running in this thread
    analyze_experiments.to_deployment(name="analyze", _sync=True).apply(_sync=True)
    runs = RunLauncher("analyze-experiments/analyze")  # the harness is the configured server
    app = make_app(abflow_env, engine, runs=runs)
    with TestClient(app) as c:
        r = c.post("/api/experiments/followup_timing/run", headers=auth(_token(engine)))
    assert r.status_code == 202, r.text
    started = r.json()["run"]
    assert (
        started["mode"] == "deployment" and started["deployment"] == "analyze-experiments/analyze"
    )

    with get_client(sync_client=True) as client:  # a sync client: fine with a running loop
        flow_run = client.read_flow_run(started["flow_run_id"])
    assert flow_run.parameters == {"experiment_keys": ["followup_timing"]}

    missing = RunLauncher("analyze-experiments/nope")
    with TestClient(make_app(abflow_env, engine, runs=missing)) as c:
        r = c.post("/api/experiments/followup_timing/run", headers=auth(_token(engine)))
    assert r.status_code == 503 and "cannot start deployment" in r.json()["detail"]
