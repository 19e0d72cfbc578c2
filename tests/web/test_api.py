"""The JSON API against the analysed demo on real PostgreSQL: auth, reads, writes, errors."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from abflow.client import AbflowClient
from abflow.definitions import Experiment
from abflow.settings import Settings
from tests.conftest import copy_experiment
from tests.web.conftest import FakeLauncher, auth, config_row, make_app

DEMO = {"checkout_button": "ship", "followup_timing": "keep_running", "enrichment_strategy": "ship"}


# --- authentication ------------------------------------------------------------------------


def test_reads_need_a_token_and_errors_are_json(client: TestClient) -> None:
    r = client.get("/api/experiments")
    assert r.status_code == 401
    assert r.json() == {"detail": "missing bearer token (Authorization: Bearer <token>)"}
    assert r.headers["www-authenticate"].startswith("Bearer")
    r = client.get("/api/experiments", headers=auth("abf_" + "x" * 43))
    assert r.status_code == 401 and r.json()["detail"] == "invalid or revoked token"
    r = client.get("/api/experiments", headers={"Authorization": "Basic YWxpY2U6cHc="})
    assert r.status_code == 401 and "Bearer" in r.json()["detail"]


def test_read_token_cannot_write(client: TestClient, tokens: dict[str, str]) -> None:
    r = client.post(
        "/api/experiments/checkout_button/rollback", headers=auth(tokens["read"]), json={}
    )
    assert r.status_code == 403
    assert r.json() == {"detail": "token 'bob-reader' has read scope; this needs a write token"}
    assert client.post("/api/experiments/checkout_button/rollback").status_code == 401


def test_revoked_token_is_refused(client: TestClient, web_engine: Engine, app: FastAPI) -> None:
    from abflow.warehouse.web_tokens import create_token, revoke_token

    with web_engine.begin() as conn:
        token = create_token(conn, "short-lived", "read")
    assert client.get("/api/experiments", headers=auth(token)).status_code == 200
    with web_engine.begin() as conn:
        revoke_token(conn, "short-lived")
    app.state.web.tokens.forget()  # other processes: within ABFLOW_WEB_AUTH_CACHE_SECONDS
    assert client.get("/api/experiments", headers=auth(token)).status_code == 401
    with web_engine.connect() as conn:
        stored = conn.execute(
            text("select token_hash, last_used_at from web_tokens where name = 'short-lived'")
        ).one()
    assert token not in stored.token_hash and stored.last_used_at is not None


def test_public_read_opens_reads_only(
    web_settings: Settings, web_engine: Engine, web_demo: dict[str, Experiment]
) -> None:
    app = make_app(web_settings, web_engine, public_read=True)
    with TestClient(app) as c:
        assert c.get("/api/experiments").status_code == 200
        r = c.get("/api/config/checkout_button")
        assert r.status_code == 200 and r.headers["cache-control"].startswith("public")
        assert c.post("/api/experiments/checkout_button/unpin").status_code == 401


# --- reads ---------------------------------------------------------------------------------


def test_list_shows_the_demo_with_decisions(client: TestClient, tokens: dict[str, str]) -> None:
    r = client.get("/api/experiments", headers=auth(tokens["read"]))
    assert r.status_code == 200
    rows = {row["experiment_key"]: row for row in r.json()}
    assert {k: rows[k]["decision"] for k in DEMO} == DEMO
    ship = rows["enrichment_strategy"]
    assert ship["variant_key"] == "hybrid" and ship["health"] in {"healthy", "warnings"}
    assert ship["rationale_first"] and ship["rationale_first"] in ship["rationale"]
    assert ship["units"] > 0 and ship["days_running"] > 0 and ship["last_run_at"]
    running = client.get(
        "/api/experiments", params={"status": "running"}, headers=auth(tokens["read"])
    ).json()
    assert all(row["status"] == "running" for row in running)
    bad = client.get("/api/experiments", params={"status": "nope"}, headers=auth(tokens["read"]))
    assert bad.status_code == 422 and bad.json()["field"] == "status"


def test_experiment_detail(client: TestClient, tokens: dict[str, str]) -> None:
    r = client.get("/api/experiments/followup_timing", headers=auth(tokens["read"]))
    assert r.status_code == 200
    body = r.json()
    assert body["latest"]["recommendation"]["decision"] == "keep_running"
    assert body["latest"]["insights"] and body["latest"]["checks"]
    assert body["config"]["experiment_key"] == "followup_timing"
    assert body["definition"]["key"] == "followup_timing"
    assert body["health"] == "healthy" and body["pin"] is None
    assert body["history"][0]["decision"] == "keep_running"
    history = client.get("/api/experiments/checkout_button", headers=auth(tokens["read"]))
    stamps = [h["as_of"] for h in history.json()["history"]]
    assert len(stamps) >= 3 and stamps == sorted(stamps, reverse=True)
    missing = client.get("/api/experiments/nope", headers=auth(tokens["read"]))
    assert missing.status_code == 404 and missing.json() == {
        "detail": "experiment 'nope' is not defined"
    }
    bad = client.get("/api/experiments/Bad-Key", headers=auth(tokens["read"]))
    assert bad.status_code == 422 and bad.json()["field"] == "key"


def test_report_is_the_cli_report(
    client: TestClient, tokens: dict[str, str], web_engine: Engine
) -> None:
    from abflow.report import render_report
    from abflow.warehouse.experiments_repo import get_experiment
    from abflow.warehouse.readback import insight_history, latest_results

    r = client.get("/api/experiments/followup_timing/report", headers=auth(tokens["read"]))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    with web_engine.connect() as conn:  # what `abflow report` reads
        exp = get_experiment(conn, "followup_timing")
        assert exp is not None
        cli = render_report(
            exp, latest_results(conn, ["followup_timing"])[0],
            insight_history(conn, "followup_timing"),
        )  # fmt: skip

    def stamp(html: str) -> str:
        return re.sub(r"generated \d{4}-\d\d-\d\d \d\d:\d\d UTC", "generated …", html)

    assert stamp(r.text) == stamp(cli)
    assert "<script" not in r.text and 'class="lift"' in r.text


def test_config_has_etag_and_cache_control(client: TestClient, tokens: dict[str, str]) -> None:
    h = auth(tokens["read"])
    r = client.get("/api/config/followup_timing", headers=h)
    assert r.status_code == 200
    body = r.json()
    assert [v["key"] for v in body["variants"]] == ["delay_30m", "delay_5m"]
    assert {"version", "promoted_variant_key", "pinned", "status"} <= set(body)
    etag = r.headers["etag"]
    assert r.headers["cache-control"] == "private, max-age=5"
    again = client.get("/api/config/followup_timing", headers={**h, "If-None-Match": etag})
    assert again.status_code == 304 and again.headers["etag"] == etag and not again.content
    other = client.get("/api/config/followup_timing", headers={**h, "If-None-Match": '"x"'})
    assert other.status_code == 200
    assert client.get("/api/config/nope", headers=h).status_code == 404


def test_assign_agrees_with_sql_and_the_python_client(
    client: TestClient, tokens: dict[str, str], web_engine: Engine
) -> None:
    h = auth(tokens["read"])
    py = AbflowClient(web_engine, ttl_seconds=600)
    units = [f"user-{i}" for i in range(120)] + ["ü nicode/ü", "a:b", " "]
    seen = set()
    with web_engine.connect() as conn:
        for key in ("followup_timing", "enrichment_strategy"):
            for unit in units:
                r = client.get(f"/api/assign/{key}/{quote(unit, safe='')}", headers=h)
                assert r.status_code == 200, r.text
                body = r.json()
                sql = conn.execute(
                    text("select assign_variant(:k, :u)"), {"k": key, "u": unit}
                ).scalar()
                assert body["variant"] == sql == py.assign_variant(key, unit), (key, unit)
                assert body["config"] == py.variant_config(key, unit)
                assert body["unit_id"] == unit
                seen.add((key, body["variant"]))
    assert len(seen) >= 4  # both splits really split
    r = client.get("/api/assign/followup_timing/user-1", headers=h)
    again = client.get(
        "/api/assign/followup_timing/user-1", headers={**h, "If-None-Match": r.headers["etag"]}
    )
    assert again.status_code == 304


# --- writes --------------------------------------------------------------------------------

DEFINITION = {
    "key": "web_created",
    "name": "Created over HTTP",
    "status": "running",
    "start_at": "2026-11-01T00:00:00Z",
    "variants": [
        {"key": "control", "weight": 0.5, "control": True, "config": {"c": 1}},
        {"key": "b", "weight": 0.5, "config": {"c": 2}},
    ],
    "metrics": [{"key": "conv", "kind": "proportion", "event": "web_buy", "role": "primary"}],
}


def _audit(engine: Engine, key: str) -> list[tuple[str, str, str]]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                text(
                    "select token_name, action, outcome from web_audit where experiment_key = :k"
                    " order by id"
                ),
                {"k": key},
            )
        ]


def test_create_from_yaml_and_json_validated_like_apply(
    client: TestClient, tokens: dict[str, str], web_engine: Engine
) -> None:
    h = auth(tokens["write"])
    r = client.post(
        "/api/experiments", content=yaml.safe_dump(DEFINITION),
        headers={**h, "Content-Type": "application/yaml"},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    assert r.json()["experiment_key"] == "web_created" and r.json()["created"] is True
    same = client.post("/api/experiments", json=DEFINITION, headers=h)
    assert same.status_code == 200 and same.json()["changed"] is False
    assert config_row(web_engine, "web_created")["version"] == 1

    bad = {**DEFINITION, "metrics": [{**DEFINITION["metrics"][0], "kind": "median"}]}
    r = client.post("/api/experiments", json=bad, headers=h)
    assert r.status_code == 422
    assert r.json()["field"] == "metrics[conv].kind"
    assert "median" in r.json()["detail"]
    r = client.post(
        "/api/experiments", content="key: [unclosed",
        headers={**h, "Content-Type": "application/yaml"},
    )  # fmt: skip
    assert r.status_code == 422 and "malformed YAML" in r.json()["detail"]
    r = client.post("/api/experiments", content="", headers=h)
    assert r.status_code == 422 and r.json()["field"] == "body"
    two_controls = {**DEFINITION, "key": "x", "variants": [
        {**v, "control": True} for v in DEFINITION["variants"]]}  # fmt: skip
    r = client.post("/api/experiments", json=two_controls, headers=h)
    assert r.status_code == 422 and r.json()["detail"].startswith("body: ")
    assert _audit(web_engine, "web_created")[0] == ("alice", "create", "ok")


def test_status_start_stop_is_audited(
    client: TestClient, tokens: dict[str, str], web_engine: Engine
) -> None:
    h = auth(tokens["write"])
    client.post("/api/experiments", json={**DEFINITION, "key": "web_lifecycle"}, headers=h)
    v0 = config_row(web_engine, "web_lifecycle")["version"]
    r = client.post("/api/experiments/web_lifecycle/status", json={"status": "stopped"}, headers=h)
    assert r.status_code == 200 and r.json()["changed"] is True
    cfg = config_row(web_engine, "web_lifecycle")
    assert cfg["status"] == "stopped" and cfg["version"] == v0 + 1
    with web_engine.connect() as conn:
        stored = conn.execute(
            text(
                "select status, definition ->> 'status' from experiments where experiment_key"
                " = 'web_lifecycle'"
            )  # fmt: skip
        ).one()
    assert tuple(stored) == ("stopped", "stopped")
    again = client.post(
        "/api/experiments/web_lifecycle/status", json={"status": "stopped"}, headers=h
    )
    assert again.json()["changed"] is False
    r = client.post("/api/experiments/web_lifecycle/status", json={"status": "running"}, headers=h)
    assert config_row(web_engine, "web_lifecycle")["status"] == "running"
    bad = client.post(
        "/api/experiments/web_lifecycle/status", json={"status": "concluded"}, headers=h
    )
    assert bad.status_code == 422 and bad.json()["field"] == "status"
    assert [a[1:] for a in _audit(web_engine, "web_lifecycle")] == [
        ("create", "ok"), ("status", "ok"), ("status", "ok"), ("status", "ok"),
    ]  # fmt: skip


def test_promote_rollback_unpin_with_the_token_as_actor(
    client: TestClient,
    tokens: dict[str, str],
    web_engine: Engine,
    web_demo: dict[str, Experiment],
) -> None:
    from tests.web.conftest import write_run

    e = copy_experiment(web_engine, web_demo["checkout_button"], "web_promo")
    h = auth(tokens["write"])
    # The gate: no run yet.
    r = client.post("/api/experiments/web_promo/promote", json={"variant": "green"}, headers=h)
    assert r.status_code == 409
    assert "no analysis run yet" in r.json()["detail"]
    r = client.post(
        "/api/experiments/web_promo/promote", json={"variant": "green", "force": True}, headers=h
    )
    assert r.status_code == 409 and "reason" in r.json()["detail"]
    from tests.conftest import analyse

    write_run(web_engine, e, analyse(web_engine, e))  # auto-promotes green (v2)
    v = config_row(web_engine, "web_promo")["version"]
    r = client.post(
        "/api/experiments/web_promo/promote",
        json={"variant": "control", "reason": "brand review"}, headers=h,
    )  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["config_version"] == v + 1 and r.json()["changed"] is True
    cfg = config_row(web_engine, "web_promo")
    assert cfg["promoted_variant_key"] == "control" and cfg["pinned_by"] == "alice"
    last = cfg["audit"][-1]
    assert (last["action"], last["actor"], last["reason"]) == ("promote", "alice", "brand review")

    r = client.post("/api/experiments/web_promo/rollback", headers=h)
    assert r.status_code == 200 and r.json()["config_version"] == v + 2
    assert config_row(web_engine, "web_promo")["promoted_variant_key"] == "green"
    client.post("/api/experiments/web_promo/rollback", json={"reason": "to split"}, headers=h)
    r = client.post("/api/experiments/web_promo/rollback", headers=h)
    assert r.status_code == 409 and "nothing to roll back" in r.json()["detail"]
    r = client.post("/api/experiments/web_promo/unpin", json={"reason": "rules"}, headers=h)
    assert r.status_code == 200
    cfg = config_row(web_engine, "web_promo")
    assert not cfg["pinned"] and cfg["version"] == v + 4
    assert [(a["action"], a["actor"]) for a in cfg["audit"]] == [
        ("promote", "auto"), ("promote", "alice"), ("rollback", "alice"), ("rollback", "alice"),
        ("unpin", "alice"),
    ]  # fmt: skip
    outcomes = [a[1:] for a in _audit(web_engine, "web_promo")]
    assert outcomes.count(("rollback", "refused")) == 1 and outcomes[0] == ("promote", "refused")

    r = client.post("/api/experiments/web_promo/promote", json={}, headers=h)
    assert r.status_code == 422 and r.json()["field"] == "variant"
    r = client.post("/api/experiments/web_promo/promote", json={"variant": "purple"}, headers=h)
    assert r.status_code == 409 and "not in experiment" in r.json()["detail"]
    r = client.post(
        "/api/experiments/web_promo/promote", content="{not json",
        headers={**h, "Content-Type": "application/json"},
    )  # fmt: skip
    assert r.status_code == 422 and r.json()["field"] == "body"
    r = client.post("/api/experiments/nope/rollback", headers=h)
    assert r.status_code == 404


def test_run_in_process_and_through_a_deployment(
    web_settings: Settings, web_engine: Engine, tokens: dict[str, str]
) -> None:
    runs = FakeLauncher()
    app = make_app(web_settings, web_engine, runs=runs)
    h = auth(tokens["write"])
    with TestClient(app) as c:
        r = c.post("/api/experiments/followup_timing/run", headers=h)
        assert r.status_code == 202, r.text
        job = r.json()["run"]
        assert job["mode"] == "in-process" and job["requested_by"] == "alice"
        runs.shutdown()
        state = c.get(f"/api/runs/{job['id']}", headers=auth(tokens["read"])).json()
        assert state["state"] == "completed" and runs.analysed == ["followup_timing"]
        assert c.get(f"/api/runs/{'0' * 32}", headers=h).status_code == 404

    asked: list[tuple[str, str]] = []

    def start(name: str, key: str) -> dict[str, Any]:
        asked.append((name, key))
        return {"mode": "deployment", "deployment": name, "flow_run_id": "fr-1", "state": "Late"}

    from abflow.web.runs import RunLauncher

    deployed = RunLauncher(
        "analyze-experiments/analyze", start_deployment=start, server_url=lambda: "http://p/api"
    )
    with TestClient(make_app(web_settings, web_engine, runs=deployed)) as c:
        r = c.post("/api/experiments/followup_timing/run", headers=h)
        assert r.status_code == 202 and r.json()["run"]["flow_run_id"] == "fr-1"
    assert asked == [("analyze-experiments/analyze", "followup_timing")]


def test_delete_archives_and_keeps_history(
    client: TestClient, tokens: dict[str, str], web_engine: Engine
) -> None:
    h = auth(tokens["write"])
    client.post("/api/experiments", json={**DEFINITION, "key": "web_archive"}, headers=h)
    r = client.delete("/api/experiments/web_archive", headers=h)
    assert r.status_code == 200 and r.json()["changed"] is True
    assert "stopped" in r.json()["message"]
    keys = [x["experiment_key"] for x in client.get("/api/experiments", headers=h).json()]
    assert "web_archive" not in keys
    everything = client.get("/api/experiments", params={"include_archived": True}, headers=h)
    assert "web_archive" in [x["experiment_key"] for x in everything.json()]
    detail = client.get("/api/experiments/web_archive", headers=h).json()
    assert detail["archived_by"] == "alice" and detail["status"] == "stopped"
    r = client.post("/api/experiments/web_archive/status", json={"status": "running"}, headers=h)
    assert r.status_code == 409 and "archived" in r.json()["detail"]
    again = client.delete("/api/experiments/web_archive", headers=h)
    assert again.json()["changed"] is False
    # Applying the definition again restores it.
    client.post("/api/experiments", json={**DEFINITION, "key": "web_archive"}, headers=h)
    assert client.get("/api/experiments/web_archive", headers=h).json()["archived_at"] is None


def test_unexpected_errors_are_json_without_a_trace(
    client: TestClient, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from abflow.warehouse import dashboard

    def boom(*_: Any, **__: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(dashboard, "overview", boom)
    r = client.get("/api/experiments", headers=auth(tokens["read"]))
    assert r.status_code == 500
    assert r.json() == {"detail": "internal error (see the server log)"}
    assert "secret" not in r.text and "Traceback" not in r.text
    assert client.get("/api/nothing-here").json() == {"detail": "Not Found"}


def test_openapi_documents_every_endpoint(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    ops = {(m.upper(), p) for p, ms in schema["paths"].items() for m in ms}
    assert ops == {
        ("GET", "/api/experiments"), ("POST", "/api/experiments"),
        ("GET", "/api/experiments/{key}"), ("DELETE", "/api/experiments/{key}"),
        ("GET", "/api/experiments/{key}/report"), ("POST", "/api/experiments/{key}/status"),
        ("POST", "/api/experiments/{key}/promote"), ("POST", "/api/experiments/{key}/rollback"),
        ("POST", "/api/experiments/{key}/unpin"), ("POST", "/api/experiments/{key}/run"),
        ("GET", "/api/runs/{job_id}"), ("GET", "/api/config/{key}"),
        ("GET", "/api/assign/{key}/{unit_id}"),
    }  # fmt: skip
    bearer = schema["components"]["securitySchemes"]["bearer"]
    assert (bearer["type"], bearer["scheme"]) == ("http", "bearer")
    assert schema["paths"]["/api/assign/{key}/{unit_id}"]["get"]["security"] == [{"bearer": []}]
    body = schema["paths"]["/api/experiments"]["post"]["requestBody"]["content"]
    assert {"application/yaml", "application/json"} <= set(body)
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/openapi.json" in docs.text
    ref = client.get("/reference")
    assert ref.status_code == 200 and ref.text.count("data-endpoint=") == len(ops)
