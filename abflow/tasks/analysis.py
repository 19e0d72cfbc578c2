"""Analysis tasks: data-quality gates and statistics over the extracted aggregates."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from prefect import task
from prefect.cache_policies import NO_CACHE

from abflow.bandit_periods import Period
from abflow.definitions import Experiment
from abflow.results import CheckOutcome, ExperimentResult, ExposureSummary, SufficientStats
from abflow.settings import Settings
from abflow.tasks import engines
from abflow.tasks.warehouse import engine_for
from abflow.warehouse import readback
from abflow.warehouse.validate import validate_postgres


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
    events_from: datetime | None = None,
) -> list[CheckOutcome]:
    """The expectation suites inside the warehouse; failures are data, never retried.

    `events_from` (an incremental run, PostgreSQL): the events suite checks only the events the
    refresh reads from there on, so validation work follows the new events, not the history.

    PostgreSQL: the suites as SQL with samples of what failed (abflow.warehouse.validate), or
    through Great Expectations itself when its Data Docs are wanted (ABFLOW_GX_DATA_DOCS_DIR).
    On DuckDB and Spark (no GX datasource) the same suites run as SQL (abflow/tasks/engines.py).
    """
    # Units of the latest earlier successful run, for the traffic-drop expectation.
    with engine_for(settings, url).connect() as conn:
        previous_units = readback.previous_units(conn, experiment.key, as_of)
    elsewhere = engines.is_elsewhere(settings, url)
    if elsewhere and not elsewhere.startswith("postgres"):
        return engines.checks_elsewhere(settings, elsewhere, experiment, as_of, previous_units)
    common: dict[str, Any] = {
        "assignments_source": settings.assignments_source,
        "events_source": settings.events_source,
        "previous_units": previous_units,
        "events_from": events_from,
    }
    if settings.gx_data_docs_dir is not None:
        from abflow.warehouse.quality import run_expectations

        return run_expectations(
            elsewhere or url,
            settings.schema_name,
            experiment,
            as_of,
            data_docs_dir=settings.gx_data_docs_dir,
            **common,
        )
    with engine_for(settings, elsewhere or url).connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            # No parallel workers: the checks run beside the extraction, finish well before it,
            # and workers would take the cores the extraction's one pass runs on (at 5M events
            # on 2 cores the pass took ~1.3 s longer beside parallel checks; benchmarks/README).
            conn.exec_driver_sql("set local max_parallel_workers_per_gather = 0")
            return validate_postgres(conn, settings.schema_name, experiment, as_of, **common)


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
    periods: list[Period] | None = None,
) -> ExperimentResult:
    """Inference, health checks and the recommendation (pure, in Python)."""
    # imported here: the statistics bring NumPy and SciPy, which the flow loads while the
    # warehouse works (flows/analyze.py _STATISTICS_IMPORTS), not before the run starts
    from abflow.pipeline import assemble_result

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
        periods=periods or (),
    )
