"""Alerts on a real `prefect server`: automations installed by the CLI notify a webhook.

The session's shared server and served deployments (tests/flows/prefect_stack.py) run the
analysis; `abflow alerts install --webhook-url` points the automations at a small HTTP receiver
on 127.0.0.1 started here. Runs are created on the `analyze` deployment through the API, as a
schedule or the UI would, and the receiver must get the notification within 60 s.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import Engine

from tests.conftest import DEMO_AS_OF, copy_experiment
from tests.flows.prefect_stack import (
    SERVER_MARKS,
    PrefectStack,
    deployment,
    log_tail,
    post,
    wait_terminal,
)
from tests.flows.test_alerts_flows import add_ghost_exposures, stop_experiment

pytestmark = SERVER_MARKS

NOTIFY_WITHIN_S = 60.0
NAMES = [
    "abflow: daily run missing",
    "abflow: promoted",
    "abflow: recommendation changed",
    "abflow: unhealthy or failed",
]


class Receiver:
    """A webhook receiver on 127.0.0.1 that keeps every POSTed JSON body with its arrival time."""

    def __init__(self) -> None:
        self.bodies: list[tuple[float, dict[str, Any]]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                with outer.lock:
                    outer.bodies.append((time.monotonic(), json.loads(raw or b"{}")))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def matching(self, pattern: str) -> list[tuple[float, dict[str, Any]]]:
        with self.lock:
            return [(t, b) for t, b in self.bodies if re.search(pattern, b.get("subject", ""))]

    def wait_for(self, pattern: str, since: float, timeout: float = NOTIFY_WITHIN_S) -> Any:
        """The first body whose subject matches, received within `timeout` of `since`."""
        deadline = since + timeout
        while time.monotonic() < deadline:
            found = self.matching(pattern)
            if found:
                return found[0]
            time.sleep(0.25)
        subjects = [b.get("subject") for _, b in self.bodies]
        raise AssertionError(f"no notification matching {pattern!r} in {timeout:.0f} s: {subjects}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _ok(result: Any) -> str:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return str(result.stdout)


@pytest.fixture(scope="module")
def installed(prefect_stack: PrefectStack, receiver: Receiver) -> list[str]:
    """`abflow alerts install --webhook-url …` run twice; the outputs."""
    url = ["--webhook-url", receiver.url]
    return [_ok(prefect_stack.run_cli("abflow", "alerts", "install", *url)) for _ in range(2)]


def _automations(stack: PrefectStack) -> list[dict[str, Any]]:
    r = post(stack.client, "/automations/filter", json={})
    r.raise_for_status()
    return [a for a in r.json() if a["name"].startswith("abflow: ")]


def _analyze(stack: PrefectStack, key: str, as_of: Any) -> tuple[str, float]:
    """A run of the served `analyze` deployment; (flow run id, when it was seen completed)."""
    dep = deployment(stack, "analyze-experiments", "analyze")
    params = {"experiment_keys": [key], "as_of": as_of.isoformat()}
    r = post(stack.client, f"/deployments/{dep['id']}/create_flow_run", json={"parameters": params})
    assert r.status_code == 201, r.text
    fr_id = r.json()["id"]
    state = wait_terminal(stack, fr_id)
    assert state["type"] == "COMPLETED", (state, log_tail(stack.home / "serve.log"))
    return fr_id, time.monotonic()


def test_installing_twice_leaves_one_automation_of_each_name(
    prefect_stack: PrefectStack, installed: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = installed
    assert [ln.split(" ")[0] for ln in second.splitlines()] == ["updated"] * 4, second
    assert "→ notifies through custom-webhook/abflow-alerts" in first
    autos = _automations(prefect_stack)
    assert Counter(a["name"] for a in autos) == Counter(NAMES)
    assert all(a["enabled"] and a["tags"] == ["abflow"] for a in autos)
    by_name = {a["name"]: a for a in autos}
    missing = by_name["abflow: daily run missing"]["trigger"]
    assert (missing["posture"], missing["within"]) == ("Proactive", 26 * 3600.0)
    assert by_name["abflow: unhealthy or failed"]["trigger"]["match"]["abflow.backfill"] == "false"

    ls = _ok(prefect_stack.run_cli("prefect", "automation", "ls"))
    listed = _ok(prefect_stack.run_cli("abflow", "alerts", "list"))
    with capsys.disabled():  # the closing note quotes these
        print(f"\n$ prefect automation ls\n{ls}\n$ abflow alerts list\n{listed}")
    flat = " ".join(ls.split())
    for name in NAMES:  # the table wraps long names; compare without line breaks
        assert all(word in flat for word in name.split()), name
    assert listed.count("custom-webhook/abflow-alerts") == 4
    # The block keeps the webhook URL among its secrets: no one reads it back in clear.
    blocks = post(prefect_stack.client, "/block_documents/filter", json={}).json()
    ours = [b for b in blocks if b["name"] == "abflow-alerts"]
    assert len(ours) == 1 and receiver_url_hidden(ours[0])


def receiver_url_hidden(block: dict[str, Any]) -> bool:
    return "127.0.0.1" not in json.dumps(block) and block["data"]["url"] == "{{webhook_url}}"


def test_an_auto_promotion_and_a_changed_recommendation_notify_within_60_s(
    prefect_stack: PrefectStack,
    installed: list[str],
    receiver: Receiver,
    engine: Engine,
    demo_loaded: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    e = copy_experiment(engine, demo_loaded["experiments"]["checkout_button"], "srv_promote")
    _analyze(prefect_stack, e.key, DEMO_AS_OF - timedelta(days=12))  # keep_running
    _, done = _analyze(prefect_stack, e.key, DEMO_AS_OF)  # ships green: auto-promoted
    arrived, body = receiver.wait_for(r"^srv_promote: 'green' promoted", since=done)
    with capsys.disabled():
        print(
            f"\nnotification after {max(0.0, arrived - done):.1f} s:\n{json.dumps(body, indent=2)}"
        )
    assert body["source"] == "abflow"
    lines = body["body"].splitlines()
    assert lines[0].startswith("srv_promote: 'green' promoted automatically (config v2) — green")
    assert lines[1] == "Latest recommendation: ship green"
    assert lines[2].startswith("Report: http://127.0.0.1:")  # the flow run's page
    assert lines[-1] == "(abflow: promoted)"
    changed = receiver.wait_for(r"^srv_promote: recommendation changed", since=done)[1]
    assert changed["subject"] == (
        "srv_promote: recommendation changed from keep_running to ship green"
    )
    time.sleep(3.0)  # a duplicate would arrive about as fast
    assert len(receiver.matching(r"^srv_promote: 'green' promoted")) == 1
    assert len(receiver.matching(r"^srv_promote: recommendation changed")) == 1
    stop_experiment(engine, e.key)


def test_a_critical_health_failure_notifies_through_the_unhealthy_automation(
    prefect_stack: PrefectStack,
    installed: list[str],
    receiver: Receiver,
    engine: Engine,
    demo_loaded: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    e = copy_experiment(engine, demo_loaded["experiments"]["checkout_button"], "srv_sick")
    add_ghost_exposures(engine, e.key)
    _, done = _analyze(prefect_stack, e.key, DEMO_AS_OF)
    body = receiver.wait_for(r"^srv_sick is unhealthy", since=done)[1]
    with capsys.disabled():
        print(f"\nunhealthy notification:\n{json.dumps(body, indent=2)}")
    assert "gx_assignments_variant_key_in_set" in body["subject"]
    lines = body["body"].splitlines()
    assert lines[0].startswith("srv_sick: investigate — Health checks failed")
    assert lines[-1] == "(abflow: unhealthy or failed)"
    stop_experiment(engine, e.key)


def test_events_are_visible_through_the_api_event_filter(
    prefect_stack: PrefectStack, installed: list[str], engine: Engine, demo_loaded: dict[str, Any]
) -> None:
    e = copy_experiment(engine, demo_loaded["experiments"]["checkout_button"], "srv_events")
    fr_id, _ = _analyze(prefect_stack, e.key, DEMO_AS_OF)
    # A person's promote from the CLI reaches the same server (PREFECT_API_URL is set).
    out = _ok(
        prefect_stack.run_cli(
            "abflow", "promote", e.key, "control", "--reason", "brand review", "--actor", "alice"
        )
    )
    assert out.startswith(f"{e.key}: promoted 'control' and pinned (config v3)")

    def ours() -> list[dict[str, Any]]:
        r = post(
            prefect_stack.client,
            "/events/filter",
            json={
                "filter": {
                    "event": {"prefix": ["abflow."]},
                    "resource": {"id": [f"abflow.experiment.{e.key}"]},
                },
                "limit": 50,
            },
        )
        r.raise_for_status()
        return list(r.json()["events"])

    expected = Counter(
        {"abflow.run.succeeded": 1, "abflow.experiment.promoted": 2, "abflow.experiment.pinned": 1}
    )
    deadline = time.monotonic() + 30
    while Counter(ev["event"] for ev in ours()) != expected and time.monotonic() < deadline:
        time.sleep(0.5)  # events are stored a moment after they arrive
    events = ours()
    assert Counter(ev["event"] for ev in events) == expected
    run = next(ev for ev in events if ev["event"] == "abflow.run.succeeded")
    assert {
        k: run["resource"].get(k)
        for k in ("abflow.experiment", "abflow.decision", "abflow.variant", "abflow.backfill")
    } == {
        "abflow.experiment": e.key,
        "abflow.decision": "ship",
        "abflow.variant": "green",
        "abflow.backfill": "false",
    }
    # Prefect relates events sent inside a flow run to that run and its deployment.
    related = {(r["prefect.resource.role"], r["prefect.resource.id"]) for r in run["related"]}
    assert ("flow-run", f"prefect.flow-run.{fr_id}") in related
    assert any(role == "deployment" for role, _ in related)
    actors = sorted(
        ev["resource"]["abflow.actor"] for ev in events if "abflow.actor" in ev["resource"]
    )
    assert actors == ["alice", "alice", "auto"]
    stop_experiment(engine, e.key)


def test_a_missing_daily_run_notifies_and_remove_deletes_everything(
    prefect_stack: PrefectStack, installed: list[str], receiver: Receiver
) -> None:
    """The absence trigger, shortened to 10 s; then `alerts remove`."""
    start = time.monotonic()
    out = _ok(
        prefect_stack.run_cli(
            "abflow", "alerts", "install", "--webhook-url", receiver.url, "--missing-after", "10s"
        )
    )
    assert out.count("updated") == 4
    body = receiver.wait_for(r"daily analysis has not completed for 10 s", since=start)[1]
    assert "deployment analyze-experiments/analyze" in body["body"]
    assert body["body"].splitlines()[-1] == "(abflow: daily run missing)"
    out = _ok(prefect_stack.run_cli("abflow", "alerts", "remove"))
    assert sorted(out.splitlines()) == sorted(
        [f"removed {n}" for n in NAMES] + ["removed block custom-webhook/abflow-alerts"]
    )
    assert _automations(prefect_stack) == []
    bad = prefect_stack.run_cli("abflow", "alerts", "install", "--block", "nope")
    assert bad.returncode == 1 and bad.stderr.strip() == (
        "error: --block: no notification block named 'nope'"
    )
