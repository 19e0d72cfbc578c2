"""Alert tasks: abflow's Prefect events after each run and config change, and the daily digest.

None of them may fail what they report on: `quietly` runs them so that an events or artifacts
outage is a warning in the log, never a failed experiment (its results are already written).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from abflow.ops.events import config_change_events, run_event_specs, send
from abflow.results import ExperimentResult, failed_run
from abflow.settings import Settings
from abflow.tasks.retry import retry_transient
from abflow.tasks.warehouse import engine_for
from abflow.warehouse import activity
from abflow.warehouse.activity import digest_markdown

T = TypeVar("T")
DIGEST_KEY = "abflow-digest"
DIGEST_WINDOW = timedelta(hours=24)
RETRY_DELAYS = [2.0, 10.0]


def _alert_task(name: str, **options: Any) -> Any:
    """A warehouse-reading task: transient errors retry briefly, nothing is cached."""
    return task(
        name=name,
        retries=2,
        retry_delay_seconds=RETRY_DELAYS,
        retry_condition_fn=retry_transient,
        cache_policy=NO_CACHE,
        **options,
    )


def quietly(call: Callable[[], T], what: str) -> T | None:
    """Run an alerting step; a failure is logged as a warning and returns None."""
    try:
        return call()
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        get_run_logger().warning("%s failed (results are not affected): %s", what, message)
        return None


@_alert_task("publish-run-events", task_run_name="events-{result.run.experiment_key}")
def publish_run_events(
    settings: Settings,
    url: str,
    result: ExperimentResult,
    backfill: bool = False,
    promotion: str | None = None,
) -> list[str]:
    """abflow.run.*, abflow.recommendation.changed and the run's own config changes."""
    with engine_for(settings, url).connect() as conn:
        specs = run_event_specs(conn, settings, result, backfill=backfill, promotion=promotion)
    return send(specs)


@_alert_task("publish-failure-events")
def publish_failure_events(
    settings: Settings,
    url: str,
    keys: list[str],
    as_of: datetime,
    flow_run_id: str | None,
    backfill: bool = False,
) -> list[str]:
    """abflow.run.failed for the failed runs this flow run recorded at as_of."""
    sent: list[str] = []
    with engine_for(settings, url).connect() as conn:
        for row in activity.failed_runs(conn, keys, as_of, flow_run_id):
            result = failed_run(**row)
            sent += send(run_event_specs(conn, settings, result, backfill=backfill))
    return sent


@_alert_task("promotion-mark")
def promotion_mark(settings: Settings, url: str, key: str) -> int:
    """The newest promotions row id of an experiment, before a manual change."""
    with engine_for(settings, url).connect() as conn:
        return activity.last_promotion_id(conn, key)


@_alert_task("publish-config-events")
def publish_config_events(settings: Settings, url: str, key: str, after_id: int) -> list[str]:
    """Events for the config changes written after `after_id` (promoted, rolled_back, …)."""
    with engine_for(settings, url).connect() as conn:
        specs = config_change_events(conn, settings, key, after_id)
    return send(specs)


@_alert_task("publish-digest")
def publish_digest(settings: Settings, url: str, until: datetime) -> str:
    """The digest of the 24 hours up to `until` as the `abflow-digest` markdown artifact."""
    since = until - DIGEST_WINDOW
    with engine_for(settings, url).connect() as conn:
        markdown = digest_markdown(conn, since, until, report_url=settings.report_url)
    create_markdown_artifact(
        markdown=markdown,
        key=DIGEST_KEY,
        description=f"abflow digest, 24 h up to {until.isoformat()}",
    )
    return markdown
