"""`abflow run` as a user runs it: a subprocess with no Prefect API configured.

The CLI starts Prefect's temporary server itself before its imports (abflow/prefect_server.py);
this checks that the run succeeds, writes its results, ships its logs before the server stops
(no "Error logging to API" at exit) and leaves no server process behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest
from sqlalchemy import Engine, text

from abflow.settings import Settings
from tests.conftest import DEMO_AS_OF, repo_root

ABFLOW_CLI = Path(sys.executable).with_name("abflow")
HANG_GUARD_S = 300  # not a speed target: a run takes ~15 s; a hang at exit took 70 s more

pytestmark = pytest.mark.skipif(not ABFLOW_CLI.exists(), reason="the abflow CLI is not installed")


def _processes_with_home(home: Path) -> list[psutil.Process]:
    """Live processes whose environment points PREFECT_HOME at this test's directory."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("PREFECT_HOME") == str(home):
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def test_abflow_run_starts_and_stops_its_own_prefect_server(
    tmp_path: Path, pg_url: str, settings: Settings, engine: Engine, demo_loaded: dict[str, Any]
) -> None:
    home = tmp_path / "prefect"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_LOCAL_STORAGE_PATH=str(home / "storage"),
        ABFLOW_DATABASE_URL=pg_url,
        ABFLOW_SCHEMA=settings.schema_name,
        ABFLOW_HOME=str(tmp_path / "abflow"),
        ABFLOW_LOCK_TIMEOUT_SECONDS="10",
        # INFO logs go to the API too: without draining them before the server stops, the exit
        # hung for ~70 s on "Error logging to API".
        PREFECT_LOGGING_LEVEL="INFO",
    )
    env.pop("ABFLOW_PUSHGATEWAY_URL", None)
    cmd = [str(ABFLOW_CLI), "run", "-e", "followup_timing", "--as-of", DEMO_AS_OF.isoformat(),
           "--json"]  # fmt: skip
    proc = subprocess.Popen(
        cmd, env=env, cwd=repo_root(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=HANG_GUARD_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"abflow run did not exit within {HANG_GUARD_S} s: {err.decode()[-2000:]}")
    stderr = err.decode()
    assert proc.returncode == 0, stderr[-3000:]
    summaries = json.loads(out)
    assert [(s["experiment_key"], s["status"]) for s in summaries] == [
        ("followup_timing", "succeeded")
    ]
    assert "Error logging to API" not in stderr
    assert "Traceback" not in stderr
    assert _processes_with_home(home) == []  # the temporary server is gone with the CLI
    # The run is in the warehouse, with the Prefect flow run id of the server it talked to.
    with engine.connect() as conn:
        row = conn.execute(
            text("select status, flow_run_id from analysis_runs where run_id = :r"),
            {"r": summaries[0]["run_id"]},
        ).one()
    assert row.status == "succeeded"
    assert row.flow_run_id


def test_abflow_run_against_a_dead_warehouse_says_one_line(tmp_path: Path) -> None:
    home = tmp_path / "prefect"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home),
        ABFLOW_DATABASE_URL="postgresql+psycopg://nobody@127.0.0.1:1/nowhere",
        ABFLOW_HOME=str(tmp_path / "abflow"),
    )
    done = subprocess.run(
        [str(ABFLOW_CLI), "run", "--quiet"], env=env, cwd=repo_root(), capture_output=True,
        timeout=HANG_GUARD_S, check=False,
    )  # fmt: skip
    lines = done.stderr.decode().strip().splitlines()
    assert done.returncode == 1
    assert len(lines) == 1 and lines[0].startswith("error: warehouse unreachable"), lines[-5:]
    assert _processes_with_home(home) == []
