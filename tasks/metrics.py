"""Prometheus: push per-experiment gauges to a Pushgateway after a run (best effort)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from abflow.definitions import Experiment
from abflow.metrics_push import push_run_metrics
from abflow.settings import Settings
from abflow.warehouse.readback import latest_results
from tasks.warehouse import engine_for


@task(name="push-metrics", retries=0, cache_policy=NO_CACHE)
def push_metrics(settings: Settings, url: str, experiments: list[Experiment]) -> int:
    """Push the latest results of these experiments; a dead gateway never fails the run."""
    if not settings.pushgateway_url or not experiments:
        return 0
    with engine_for(settings, url).connect() as conn:
        results = latest_results(conn, [e.key for e in experiments])
    return push_run_metrics(
        settings.pushgateway_url, results, experiments={e.key: e for e in experiments}
    )
