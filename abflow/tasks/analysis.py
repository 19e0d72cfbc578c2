"""Analysis tasks: data-quality gates and statistics over the extracted aggregates."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from prefect import task
from prefect.cache_policies import NO_CACHE

from abflow.definitions import Experiment
from abflow.pipeline import assemble_result
from abflow.results import CheckOutcome, ExperimentResult, ExposureSummary, SufficientStats
from abflow.settings import Settings
from abflow.tasks import engines
from abflow.warehouse.quality import run_expectations


@task(
    name="validate-data",
    retries=0,
    cache_policy=NO_CACHE,
    task_run_name="validate-{experiment.key}",
)
def validate_data(
    settings: Settings,
    url: str,
    experiment: Experiment,
    as_of: datetime,
    previous_units: int | None = None,
) -> list[CheckOutcome]:
    """Great Expectations suites inside the warehouse; failures are data, never retried.

    On DuckDB and Spark (no GX datasource) the same suites run as SQL (abflow/tasks/engines.py).
    """
    elsewhere = engines.is_elsewhere(settings, url)
    if elsewhere and not elsewhere.startswith("postgres"):
        return engines.checks_elsewhere(settings, elsewhere, experiment, as_of, previous_units)
    return run_expectations(
        elsewhere or url,
        settings.schema_name,
        experiment,
        as_of,
        assignments_source=settings.assignments_source,
        events_source=settings.events_source,
        previous_units=previous_units,
        data_docs_dir=settings.gx_data_docs_dir,
    )


@task(name="compute-statistics", cache_policy=NO_CACHE, task_run_name="statistics-{experiment.key}")
def compute_statistics(
    run_id: UUID,
    experiment: Experiment,
    as_of: datetime,
    flow_run_id: str | None,
    started_at: datetime,
    finished_at: datetime,
    stats: list[SufficientStats],
    exposure: ExposureSummary,
    quality_checks: list[CheckOutcome],
) -> ExperimentResult:
    """Inference, health checks and the recommendation (pure, in Python)."""
    return assemble_result(
        run_id=run_id,
        experiment=experiment,
        as_of=as_of,
        flow_run_id=flow_run_id,
        started_at=started_at,
        finished_at=finished_at,
        stats=stats,
        exposure=exposure,
        quality_checks=quality_checks,
    )
