"""The local Prefect server `abflow run` keeps between runs (abflow/prefect_server.py).

Without a Prefect API URL the first run starts a server detached under a watchdog
(`abflow.prefect_daemon`) and records it in $PREFECT_HOME/abflow-server.json; the next runs reuse
it (no 3.5 s boot); `abflow server stop` and an idle period stop it. Checked as a user runs it:
`abflow` subprocesses against a real embedded PostgreSQL.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from sqlalchemy import Engine, text

from abflow.prefect_server import stop_kept_server
from abflow.settings import Settings
from tests.conftest import DEMO_AS_OF, repo_root

ABFLOW_CLI = Path(sys.executable).with_name("abflow")
HANG_GUARD_S = 300

pytestmark = pytest.mark.skipif(not ABFLOW_CLI.exists(), reason="the abflow CLI is not installed")


def _env(tmp_path: Path, pg_url: str, settings: Settings, idle_minutes: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    home = tmp_path / "prefect"
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_LOCAL_STORAGE_PATH=str(home / "storage"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        ABFLOW_DATABASE_URL=pg_url,
        ABFLOW_SCHEMA=settings.schema_name,
        ABFLOW_HOME=str(tmp_path / "abflow"),
        ABFLOW_LOCK_TIMEOUT_SECONDS="10",
        ABFLOW_PREFECT_SERVER_IDLE_MINUTES=idle_minutes,
    )
    env.pop("ABFLOW_PUSHGATEWAY_URL", None)
    return env


def _abflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ABFLOW_CLI), *args], env=env, cwd=repo_root(), capture_output=True, text=True,
        timeout=HANG_GUARD_S, check=False,
    )  # fmt: skip


def _run(env: dict[str, str], days_back: int = 0) -> list[dict[str, Any]]:
    as_of = (DEMO_AS_OF - timedelta(days=days_back)).isoformat()
    done = _abflow(env, "run", "-e", "followup_timing", "--as-of", as_of, "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    return list(json.loads(done.stdout))


def _state(home: Path) -> dict[str, Any] | None:
    path = home / "abflow-server.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def _gone(pids: list[int], within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in pids):
            return True
        time.sleep(0.2)
    return False


@pytest.fixture
def prefect_home(tmp_path: Path) -> Iterator[Path]:
    """This test's PREFECT_HOME; its kept server is stopped whatever the test's outcome."""
    home = tmp_path / "prefect"
    yield home
    stop_kept_server(home)


def test_runs_share_one_kept_server_until_it_is_stopped(
    tmp_path: Path,
    prefect_home: Path,
    pg_url: str,
    settings: Settings,
    engine: Engine,
    demo_loaded: dict[str, Any],
) -> None:
    env = _env(tmp_path, pg_url, settings, idle_minutes="10")
    home = Path(env["PREFECT_HOME"])
    home.mkdir(parents=True)
    # a record left by a server that died with the machine: replaced, not waited on
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (home / "abflow-server.json").write_text(
        json.dumps({"pid": dead.pid, "api_url": "http://127.0.0.1:1/api", "port": 1}),
        encoding="utf-8",
    )

    first = _run(env)
    state = _state(home)
    assert state is not None and state["port"] != 1
    pids = [int(state["pid"]), int(state["server_pid"])]
    assert all(psutil.pid_exists(p) for p in pids)  # it outlived the run
    second = _run(env, days_back=1)  # another as_of: a rerun of a window replaces its run
    assert _state(home) == state  # the same server, not a new one

    # Prefect's run record of both runs is on that server
    response = httpx.post(f"{state['api_url']}/flow_runs/filter", json={"limit": 10}, timeout=10)
    response.raise_for_status()
    flow_run_ids = {r["id"] for r in response.json()}
    runs = [first[0], second[0]]
    with engine.connect() as conn:
        recorded = {
            str(conn.execute(
                text("select flow_run_id from analysis_runs where run_id = :r"),
                {"r": s["run_id"]},
            ).scalar_one())
            for s in runs
        }  # fmt: skip
    assert len(recorded) == 2 and recorded <= flow_run_ids

    status = _abflow(env, "server", "status")
    assert (
        status.returncode == 0
        and "answering" in status.stdout
        and state["api_url"] in status.stdout
    )
    stopped = _abflow(env, "server", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert _state(home) is None
    assert _gone(pids, within_s=15)
    assert "no kept Prefect server" in _abflow(env, "server", "status").stdout


def test_a_kept_server_stops_itself_when_idle(
    tmp_path: Path, prefect_home: Path, pg_url: str, settings: Settings, demo_loaded: dict[str, Any]
) -> None:
    env = _env(tmp_path, pg_url, settings, idle_minutes="0.05")  # 3 s
    home = Path(env["PREFECT_HOME"])
    _run(env)
    state = _state(home)
    assert state is not None
    pids = [int(state["pid"]), int(state["server_pid"])]
    assert _gone(pids, within_s=60)
    assert _state(home) is None
    assert "idle for 3 s" in (home / "abflow-server.log").read_text(encoding="utf-8")
