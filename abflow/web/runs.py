"""POST …/run: the analysis flow for one experiment, on the Prefect server or in this process.

With a Prefect server configured (PREFECT_API_URL, from the environment or the active profile)
the `analyze` deployment is started with `experiment_keys=[key]` and the answer carries its flow
run id. Without one the flow runs in a background thread of the web process, one run at a time
(Prefect's ephemeral mode, as `abflow run` does); GET /api/runs/{id} reports its progress.
Prefect is imported only here, and only when a run is requested.
"""

from __future__ import annotations

import os
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, cast


class RunUnavailable(RuntimeError):
    """The run could not be started (e.g. the deployment does not exist); one line."""


def _prefect_defaults() -> None:
    # The CLI's knobs, set before Prefect is imported: quiet, no analytics, patient server.
    from abflow.cli import _prefect_defaults as cli_defaults

    cli_defaults()


def prefect_api_url() -> str | None:
    """The configured Prefect server, if any (environment first, then the active profile)."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    _prefect_defaults()
    from prefect.settings import PREFECT_API_URL

    value = PREFECT_API_URL.value()
    return str(value) if value else None


def _analyze_in_process(key: str) -> list[dict[str, Any]]:
    _prefect_defaults()
    from abflow.flows.analyze import analyze_experiments

    return analyze_experiments(experiment_keys=[key])


def _start_deployment(name: str, key: str) -> dict[str, Any]:
    _prefect_defaults()
    from prefect.deployments import run_deployment

    try:
        # _sync: a sync call even when this thread has an event loop running (Prefect would
        # otherwise hand back a coroutine)
        flow_run = cast(Any, run_deployment)(
            name=name, parameters={"experiment_keys": [key]}, timeout=0, _sync=True
        )
    except Exception as exc:  # ObjectNotFound, connection errors: one line for the caller
        raise RunUnavailable(f"cannot start deployment '{name}': {exc}".splitlines()[0]) from exc
    state = getattr(flow_run, "state", None)
    return {
        "mode": "deployment",
        "deployment": name,
        "flow_run_id": str(flow_run.id),
        "state": getattr(state, "name", None) or "Scheduled",
    }


class RunLauncher:
    """Starts analysis runs and remembers the in-process ones (the last 100)."""

    def __init__(
        self,
        deployment: str,
        *,
        analyze: Any = _analyze_in_process,
        start_deployment: Any = _start_deployment,
        server_url: Any = prefect_api_url,
    ) -> None:
        self._deployment = deployment
        self._analyze = analyze
        self._start_deployment = start_deployment
        self._server_url = server_url
        self._executor: ThreadPoolExecutor | None = None
        self._jobs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def launch(self, key: str, actor: str) -> dict[str, Any]:
        """Start the analysis of one experiment; the answer says how and where to follow it."""
        if self._server_url():
            return self._start_deployment(self._deployment, key)
        job_id = uuid.uuid4().hex
        job: dict[str, Any] = {
            "mode": "in-process",
            "id": job_id,
            "experiment_key": key,
            "requested_by": actor,
            "requested_at": datetime.now(UTC).isoformat(),
            "state": "queued",
        }
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="abflow-run")
            self._jobs[job_id] = job
            for old in list(self._jobs)[:-100]:
                del self._jobs[old]
            self._executor.submit(self._run, job)
        return dict(job)

    def _run(self, job: dict[str, Any]) -> None:
        job["state"] = "running"
        try:
            summaries = self._analyze(job["experiment_key"])
        except Exception as exc:  # the failure is the job's outcome, shown to whoever polls
            job.update(state="failed", error=str(exc).splitlines()[0] if str(exc) else repr(exc))
        else:
            job.update(state="completed", result=summaries)
        job["finished_at"] = datetime.now(UTC).isoformat()

    def job(self, job_id: str) -> dict[str, Any] | None:
        """An in-process job's state (None when unknown)."""
        found = self._jobs.get(job_id)
        return None if found is None else dict(found)

    def shutdown(self) -> None:
        """Wait for queued in-process runs to finish (app shutdown, tests)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)
