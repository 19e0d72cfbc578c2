"""A real `prefect server`, the served deployments, and a backfill triggered as the UI does.

The module starts `prefect server start` (temporary PREFECT_HOME, free loopback port) and
`flows.serve.serve_all()` in subprocesses, creates a backfill flow run with custom parameters
through `POST /api/deployments/{id}/create_flow_run` (the request body of the UI's custom-run
form), waits for it, and checks the warehouse rows and the artifacts through the API. Both
processes are stopped by PID: SIGTERM to their process groups, then SIGKILL.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from sqlalchemy import Engine, text

from abflow.settings import Settings
from tests.conftest import repo_root

PREFECT_CLI = Path(sys.executable).with_name("prefect")
SERVER_STARTUP_S = 150.0  # a cold `prefect server start` on a busy 2-core box takes up to ~60 s
SERVE_STARTUP_S = 90.0
RUN_TIMEOUT_S = 180.0
STOP_GRACE_S = 10.0
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not PREFECT_CLI.exists(), reason="the prefect CLI is not installed"),
]


@dataclass
class PrefectStack:
    """The running server and serve processes."""

    api: str
    home: Path
    client: httpx.Client


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _base_env(home: Path) -> dict[str, str]:
    """The pytest process's env without any PREFECT_* setting, plus a private Prefect home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOCAL_STORAGE_PATH=str(home / "storage"),
    )
    return env


def _wait_for(what: str, probe: Callable[[], bool], timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.returncode}")
        try:
            if probe():
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{what}: not ready after {timeout:.0f} s")


def _stop(proc: subprocess.Popen) -> list[int]:
    """SIGTERM the process group, SIGKILL after a grace period, then any straggler by PID.

    Returns the PIDs still alive afterwards (none expected).
    """
    try:
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # start_new_session: pgid == pid
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=STOP_GRACE_S)
    # Children that left the group (or ignored SIGTERM) are killed one by one, by PID.
    for p in family:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(family, timeout=STOP_GRACE_S)
    return [p.pid for p in alive]


def _log_tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


@pytest.fixture(scope="module")
def prefect_stack(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    settings: Settings,
    pg_url: str,
) -> Iterator[PrefectStack]:
    """`prefect server start` on a free port and `serve_all()` pointed at the test schema."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    procs: list[subprocess.Popen] = []
    server_log = home / "server.log"
    serve_log = home / "serve.log"
    client = httpx.Client(base_url=api, timeout=30.0)
    try:
        server_env = _base_env(home)
        server_env.update(PREFECT_UI_ENABLED="false", PREFECT_SERVER_LOGGING_LEVEL="WARNING")
        cmd = [str(PREFECT_CLI), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
        with server_log.open("wb") as out:
            procs.append(
                subprocess.Popen(
                    cmd,
                    env=server_env,
                    cwd=home,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        # Load the demo warehouse while the server boots (both take tens of seconds).
        request.getfixturevalue("demo_loaded")
        _wait_for(
            "prefect server",
            lambda: client.get("/health").status_code == 200,
            SERVER_STARTUP_S,
            procs[0],
        )

        root = repo_root()
        serve_env = _base_env(home / "serve")
        serve_env.update(
            PREFECT_API_URL=api,
            PREFECT_RUNNER_POLL_FREQUENCY="2",
            ABFLOW_DATABASE_URL=pg_url,
            ABFLOW_SCHEMA=settings.schema_name,
            ABFLOW_HOME=str(home / "abflow"),
            ABFLOW_LOCK_TIMEOUT_SECONDS="10",
            PYTHONPATH=str(root),
        )
        serve_env.pop("ABFLOW_PUSHGATEWAY_URL", None)
        with serve_log.open("wb") as out:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-c", "from flows.serve import serve_all; serve_all()"],
                    env=serve_env,
                    cwd=root,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

        def served() -> bool:
            r = client.post("/deployments/filter", json={})
            found = {d["name"] for d in r.json()} if r.status_code == 200 else set()
            return {"analyze", "backfill", "promote", "rollback"} <= found

        _wait_for("served deployments", served, SERVE_STARTUP_S, procs[1])
        yield PrefectStack(api=api, home=home, client=client)
    except Exception:
        sys.stderr.write(f"--- server log ---\n{_log_tail(server_log)}\n")
        sys.stderr.write(f"--- serve log ---\n{_log_tail(serve_log)}\n")
        raise
    finally:
        client.close()
        # serve() pauses its deployments on shutdown through the API: stop it before the server.
        stray = [pid for proc in reversed(procs) for pid in _stop(proc)]
        shutil.rmtree(home, ignore_errors=True)
        assert not stray, f"processes left running: {stray}"


def _deployment(stack: PrefectStack, flow: str, name: str) -> dict[str, Any]:
    r = stack.client.get(f"/deployments/name/{flow}/{name}")
    r.raise_for_status()
    return r.json()


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
    analyze = _deployment(stack, "analyze-experiments", "analyze")
    assert [s["schedule"].get("cron") for s in analyze["schedules"]] == ["15 6 * * *"]
    backfill = _deployment(stack, "backfill-experiments", "backfill")
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
    # flows/backfill.py adds a pattern to the date parameters, so non-dates are refused too.
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
        r = _post(
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
    r = _post(stack.client, "/flow_runs/count", json={"deployments": {"id": {"any_": [dep["id"]]}}})
    assert r.json() == 0


def _post(client: httpx.Client, path: str, **kwargs: Any) -> httpx.Response:
    """POST, retrying the server's transient 503 (its SQLite database busy on a loaded machine)."""
    for _ in range(10):
        r = client.post(path, **kwargs)
        if r.status_code != 503:
            return r
        time.sleep(2.0)
    return r


def _wait_terminal(stack: PrefectStack, fr_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while True:
        r = stack.client.get(f"/flow_runs/{fr_id}")
        if r.status_code == 503 and time.monotonic() <= deadline:  # SQLite busy: transient
            time.sleep(1.0)
            continue
        state = r.json()["state"]
        if state["type"] in TERMINAL or time.monotonic() > deadline:
            return state
        time.sleep(1.0)


def test_ui_custom_backfill_run_on_a_real_server(
    prefect_stack: PrefectStack, engine: Engine, demo_loaded: dict[str, Any]
) -> None:
    """One test, so that `-n 2` never starts a second server for this module."""
    dep = _check_served_deployments(prefect_stack)
    _check_bad_parameters_rejected(prefect_stack, dep)

    params = {"start": "2026-11-05", "end": "2026-11-07", "experiments": ["followup_timing"]}
    client = prefect_stack.client
    r = _post(client, f"/deployments/{dep['id']}/create_flow_run", json=_ui_custom_run(params, dep))
    assert r.status_code == 201, r.text
    run = r.json()
    assert run["parameters"] == params and run["state"]["type"] == "SCHEDULED"
    fr_id = run["id"]
    state = _wait_terminal(prefect_stack, fr_id)
    assert state["type"] == "COMPLETED", (state, _log_tail(prefect_stack.home / "serve.log"))

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

    arts = _post(
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
    }
