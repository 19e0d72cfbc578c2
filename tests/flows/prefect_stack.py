"""A real `prefect server` and the served deployments, shared by the real-server tests.

`start_stack` starts `prefect server start` (temporary PREFECT_HOME, free loopback port) and
`abflow.flows.serve.serve_all()` in subprocesses; both are stopped by PID at the end of the session:
SIGTERM to their process groups, then SIGKILL. tests/flows/conftest.py wraps it in the
session-scoped `prefect_stack` fixture; tests/conftest.py schedules the modules using it on one
pytest-xdist worker, so a `-n 2` session starts one server, not one per worker.
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
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from abflow.settings import Settings
from tests.conftest import repo_root

PREFECT_CLI = Path(sys.executable).with_name("prefect")
# The marks of every module using the shared server; list the module in
# tests/conftest.py:ONE_WORKER_MODULES too, so that `-n 2` starts one server, not one per worker.
SERVER_MARKS = [
    pytest.mark.slow,
    pytest.mark.skipif(not PREFECT_CLI.exists(), reason="the prefect CLI is not installed"),
]
SERVER_STARTUP_S = 150.0  # a cold `prefect server start` on a busy 2-core box takes up to ~60 s
SERVE_STARTUP_S = 90.0
RUN_TIMEOUT_S = 180.0
STOP_GRACE_S = 10.0
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


@dataclass
class PrefectStack:
    """The running server and serve processes."""

    api: str
    home: Path
    client: httpx.Client
    env: dict[str, str]  # for more clients: PREFECT_API_URL and the test schema's ABFLOW_*

    def run_cli(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Run a console script of the venv (`abflow …`, `prefect …`) against this server."""
        env = {**self.env, "PREFECT_HOME": str(self.home / "cli")}
        exe = Path(sys.executable).with_name(args[0])
        return subprocess.run(
            [str(exe), *args[1:]],
            env=env,
            cwd=env["PYTHONPATH"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_env(home: Path) -> dict[str, str]:
    """The pytest process's env without any PREFECT_* setting, plus a private Prefect home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOCAL_STORAGE_PATH=str(home / "storage"),
    )
    return env


def wait_for(what: str, probe: Callable[[], bool], timeout: float, proc: subprocess.Popen) -> None:
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


def stop(proc: subprocess.Popen) -> list[int]:
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


def log_tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def start_stack(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    settings: Settings,
    pg_url: str,
) -> Iterator[PrefectStack]:
    """`prefect server start` on a free port and `serve_all()` pointed at the test schema.

    Generator for a session-scoped fixture (tests/flows/conftest.py): one server per session.
    """
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    procs: list[subprocess.Popen] = []
    server_log = home / "server.log"
    serve_log = home / "serve.log"
    client = httpx.Client(base_url=api, timeout=30.0)
    try:
        server_env = base_env(home)
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
        wait_for(
            "prefect server",
            lambda: client.get("/health").status_code == 200,
            SERVER_STARTUP_S,
            procs[0],
        )

        root = repo_root()
        serve_env = base_env(home / "serve")
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
                    [sys.executable, "-c", "from abflow.flows.serve import serve_all; serve_all()"],
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

        wait_for("served deployments", served, SERVE_STARTUP_S, procs[1])
        yield PrefectStack(api=api, home=home, client=client, env=serve_env)
    except Exception:
        sys.stderr.write(f"--- server log ---\n{log_tail(server_log)}\n")
        sys.stderr.write(f"--- serve log ---\n{log_tail(serve_log)}\n")
        raise
    finally:
        client.close()
        # serve() pauses its deployments on shutdown through the API: stop it before the server.
        stray = [pid for proc in reversed(procs) for pid in stop(proc)]
        shutil.rmtree(home, ignore_errors=True)
        assert not stray, f"processes left running: {stray}"


def post(client: httpx.Client, path: str, **kwargs: Any) -> httpx.Response:
    """POST, retrying the server's transient 503 (its SQLite database busy on a loaded machine)."""
    for _ in range(10):
        r = client.post(path, **kwargs)
        if r.status_code != 503:
            return r
        time.sleep(2.0)
    return r


def wait_terminal(stack: PrefectStack, fr_id: str) -> dict[str, Any]:
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


def deployment(stack: PrefectStack, flow: str, name: str) -> dict[str, Any]:
    r = stack.client.get(f"/deployments/name/{flow}/{name}")
    r.raise_for_status()
    return r.json()
