"""Prometheus: push per-experiment gauges to a Pushgateway after a run (best effort)."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from abflow.definitions import Experiment
from abflow.metrics_push import push_run_metrics
from abflow.redact import one_line
from abflow.settings import Settings
from abflow.tasks.warehouse import engine_for
from abflow.warehouse.readback import latest_results


@task(name="push-metrics", retries=0, cache_policy=NO_CACHE)
def push_metrics(settings: Settings, url: str, experiments: list[Experiment]) -> int:
    """Push the latest results of these experiments; a dead gateway never fails the run.

    Whatever goes wrong (a malformed URL, a refused connection, a gateway error) is one warning
    with credentials masked, and 0 series pushed: the results are already written.
    """
    if not settings.pushgateway_url or not experiments:
        return 0
    try:
        with engine_for(settings, url).connect() as conn:
            results = latest_results(conn, [e.key for e in experiments])
        return push_run_metrics(
            settings.pushgateway_url, results, experiments={e.key: e for e in experiments}
        )
    except Exception as exc:
        get_run_logger().warning("metrics not pushed: %s", one_line(exc))
        return 0
