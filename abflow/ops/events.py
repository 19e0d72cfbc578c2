"""Send abflow's events to Prefect (`prefect.events.emit_event`).

Inside a flow run, Prefect adds the flow run, flow, deployment and tags as related resources.
Sending never raises: an events outage must not fail an analysis that already wrote its results.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from prefect.events import emit_event
from sqlalchemy import Connection

from abflow.alerting.events import EventSpec, link_for, promotion_events, run_events
from abflow.results import ExperimentResult
from abflow.settings import Settings
from abflow.warehouse import activity

logger = logging.getLogger(__name__)


def send(specs: Iterable[EventSpec]) -> list[str]:
    """Emit each event; the names of those handed to Prefect's events worker."""
    sent = []
    for spec in specs:
        try:
            emitted = emit_event(
                event=spec.event, resource=spec.resource, payload=spec.payload, id=spec.id
            )
        except Exception as exc:  # e.g. EventTooLarge; emit_event swallows the rest itself
            logger.warning("abflow event %s not sent: %s", spec.event, type(exc).__name__)
            continue
        if emitted is not None:
            sent.append(spec.event)
    return sent


def run_link(settings: Settings, key: str, run_id: Any = None) -> str:
    """ABFLOW_REPORT_URL with {key}/{run_id}, else this flow run's page in the Prefect UI."""
    fallback = None
    if not settings.report_url:
        from prefect.runtime import flow_run

        try:
            fallback = flow_run.ui_url
        except Exception:  # outside a flow run, or no UI URL configured
            fallback = None
    return link_for(settings.report_url, key, run_id, fallback)


def flush(timeout: float = 10.0) -> None:
    """Wait for the events worker to hand queued events to the API (short-lived processes)."""
    from prefect.events.worker import EventsWorker

    try:
        EventsWorker.drain_all(timeout=timeout)
    except Exception as exc:
        logger.warning("abflow events not flushed: %s", type(exc).__name__)


def run_event_specs(
    conn: Connection,
    settings: Settings,
    result: ExperimentResult,
    *,
    backfill: bool,
    promotion: str | None = None,
) -> list[EventSpec]:
    """A written (or failed) run's events: the run, a changed recommendation, config changes."""
    run = result.run
    key = run.experiment_key
    link = run_link(settings, key, run.run_id)
    previous = activity.previous_recommendation(conn, key, run.as_of, run.run_id)
    newest = activity.is_newest(conn, key, run.as_of, run.run_id)
    specs = run_events(
        result,
        previous=previous,
        newest=newest,
        backfill=backfill,
        link=link,
        promotion=promotion,
    )
    rows = activity.promotion_rows(conn, key, run_id=run.run_id)
    if rows:
        rec = result.recommendation
        mine = None if rec is None else {**rec.as_row(), "run_id": run.run_id}
        specs += promotion_events(rows, recommendation=mine, link=link)
    return specs


def config_change_events(
    conn: Connection, settings: Settings, key: str, after_id: int
) -> list[EventSpec]:
    """Events for the experiment's promotions rows after `after_id` (a manual change)."""
    rows = activity.promotion_rows(conn, key, after_id=after_id)
    if not rows:
        return []
    rec = activity.latest_recommendation(conn, key)
    link = run_link(settings, key, rec["run_id"] if rec else None)
    return promotion_events(rows, recommendation=rec, link=link)
