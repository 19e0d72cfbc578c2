"""No credential in anything a run leaves behind, and a dead Pushgateway never fails a run.

The run connects with a login whose password is in ABFLOW_DATABASE_URL and pushes to a
Pushgateway URL holding a password, malformed (`:notaport`) or pointing at a dead port. Then
everything the Prefect API stored for the run (flow and task run states and parameters, logs,
events, artifacts) and everything printed is searched for either secret.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import anyio
import pytest

from tests.conftest import DEMO_AS_OF
from tests.flows.conftest import Writer

PUSH_SECRET = "PUSHSECRET"


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _everything_stored(flow_run_id: str) -> str:
    """All the Prefect API holds about one flow run, as text."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )

    async with get_client() as client:
        flow_run = await client.read_flow_run(flow_run_id)
        runs = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id]))
        task_runs = await client.read_task_runs(flow_run_filter=runs)
        logs = await client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run.id]))
        )
        states = await client.read_flow_run_states(flow_run_id)
        artifacts = await client.read_artifacts()
        events = await client._client.post(
            "/events/filter", json={"filter": {"any_resource": {"id_prefix": ["prefect."]}}}
        )
    parts: list[Any] = [flow_run, *task_runs, *logs, *states, *artifacts]
    return "\n".join(p.model_dump_json() for p in parts) + events.text


class _Collect:
    """Every log record the process creates, as a handler would print it (traceback included).

    Taken at record creation (after abflow's redacting factory), because Prefect reconfigures
    its loggers' handlers when a run starts.
    """

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")

    def __call__(self, record: logging.LogRecord) -> None:
        self.lines.append(self._formatter.format(record))


@pytest.fixture()
def printed() -> Iterator[_Collect]:
    import abflow.flows  # noqa: F401 - installs abflow's log redaction, as every entrypoint does

    collect = _Collect()
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        collect(record)
        return record

    logging.setLogRecordFactory(factory)
    yield collect
    logging.setLogRecordFactory(previous)


def _drain() -> None:
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    EventsWorker.drain_all(timeout=10)


@pytest.mark.parametrize(
    "gateway",
    [
        f"http://pg:{PUSH_SECRET}@127.0.0.1:notaport",
        "http://pg:{secret}@127.0.0.1:{port}",
        "http://{secret}@127.0.0.1:{port}/",
        "http://[::1",
    ],
)
def test_no_secret_anywhere_and_the_run_succeeds(
    writer: Writer,
    as_login: Any,
    monkeypatch: pytest.MonkeyPatch,
    printed: _Collect,
    gateway: str,
) -> None:
    from abflow.flows.analyze import analyze_experiments

    db_password = urlsplit(writer.url).password
    assert db_password and len(db_password) >= 16
    monkeypatch.setenv(
        "ABFLOW_PUSHGATEWAY_URL", gateway.format(secret=PUSH_SECRET, port=_dead_port())
    )
    as_login(writer)

    state = analyze_experiments(
        experiment_keys=["followup_timing"], as_of=DEMO_AS_OF, return_state=True
    )
    assert state.is_completed(), state.message
    summaries = state.result()
    assert [s["status"] for s in summaries] == ["succeeded"]  # results written, push failed
    _drain()
    stored = anyio.run(_everything_stored, str(state.state_details.flow_run_id))
    logged = "\n".join(printed.lines)
    # the failed push is reported, as one warning
    assert "metrics not pushed" in logged or "pushing metrics for followup_timing" in logged
    for text in (stored, logged):
        assert PUSH_SECRET not in text
        assert db_password not in text


def test_markdown_artifact_escapes_warehouse_strings(
    writer: Writer, as_login: Any, engine: Any
) -> None:
    """An unknown variant key `<script>…` reaches the summary as text, not as HTML."""
    from prefect import get_client
    from sqlalchemy import text

    from abflow.flows.analyze import analyze_experiments

    payload = "<script>alert(1)</script>"
    with engine.begin() as conn:
        conn.execute(
            text(
                f'insert into "{writer.schema}".assignments'  # noqa: S608
                " (experiment_key, unit_id, variant_key, assigned_at)"
                " values ('followup_timing', 'intruder', :v, timestamptz '2026-11-10')"
            ),
            {"v": payload},
        )
    as_login(writer)
    analyze_experiments(experiment_keys=["followup_timing"], as_of=DEMO_AS_OF)

    async def summary() -> str:
        async with get_client() as client:
            arts = await client.read_artifacts()
        mine = [a for a in arts if a.key == "abflow-followup-timing-summary"]
        return str(max(mine, key=lambda a: a.created or 0).data)

    markdown = anyio.run(summary)
    assert "<script" not in markdown
    assert "&lt;script&gt;alert\\(1\\)&lt;/script&gt;" in markdown
