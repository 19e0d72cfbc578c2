"""Warehouse tasks: check the schema, load definitions, extract aggregates, write results."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import Engine

from abflow.bandit_periods import Period
from abflow.definitions import Experiment
from abflow.results import ExperimentResult, ExposureSummary, SufficientStats
from abflow.settings import Settings
from abflow.tasks import engines
from abflow.tasks.retry import RETRY_DELAYS, retry_transient
from abflow.warehouse import (
    allocation,
    experiments_repo,
    extract,
    incremental,
    promotion,
    writer,
)
from abflow.warehouse.engine import make_engine
from abflow.warehouse.engines import PostgresExecutor
from abflow.warehouse.migrate import check_schema


@lru_cache(maxsize=8)
def engine_for(settings: Settings, url: str) -> Engine:
    """One pooled engine per process and URL, shared by the task threads."""
    return make_engine(settings, url=url)


@task(
    name="check-schema",
    retries=3,
    retry_delay_seconds=RETRY_DELAYS,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
)
def check_schema_version(settings: Settings, url: str) -> None:
    """Stop (SchemaOutdated, one line) unless the schema has every migration; never migrates.

    Runs, backfills and promotions work as a login that is only in abflow_writer: the schema
    owner applies migrations with `abflow migrate`.
    """
    check_schema(engine_for(settings, url), settings.schema_name)


@task(
    name="load-experiments",
    retries=3,
    retry_delay_seconds=RETRY_DELAYS,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
)
def load_experiments(
    settings: Settings, url: str, keys: list[str] | None
) -> tuple[list[Experiment], dict[str, str]]:
    """Running experiments (or exactly the given keys) and {key: error} for invalid ones."""
    with engine_for(settings, url).connect() as conn:
        good, broken = experiments_repo.list_experiments_checked(
            conn, status=None if keys else "running", keys=keys or None
        )
    if keys:
        missing = [k for k in keys if k not in broken and k not in {e.key for e in good}]
        if missing:
            raise ValueError(f"unknown experiment key(s): {', '.join(missing)}")
    return good, broken


@task(
    name="refresh-window",
    retries=3,
    retry_delay_seconds=RETRY_DELAYS,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
    task_run_name="refresh-window-{experiment.key}",
)
def refresh_window(
    settings: Settings, url: str, experiment: Experiment, as_of: datetime, full_refresh: bool
) -> datetime | None:
    """Where this run's incremental refresh reads events from on PostgreSQL (None: a full pass).

    Read before the refresh starts (it moves the state), so validation can check the same events.
    """
    elsewhere = engines.is_elsewhere(settings, url)
    if not settings.incremental or (elsewhere and not elsewhere.startswith("postgres")):
        return None
    with engine_for(settings, elsewhere or url).connect() as conn:
        return incremental.next_events_from(
            PostgresExecutor(conn),
            experiment,
            as_of,
            source_names=(settings.assignments_source, settings.events_source),
            late_lookback_hours=settings.late_lookback_hours,
            full_refresh=full_refresh,
        )


@task(
    name="allocation-periods",
    retries=3,
    retry_delay_seconds=RETRY_DELAYS,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
)
def allocation_periods(
    settings: Settings, url: str, experiment: Experiment, as_of: datetime
) -> list[Period]:
    """A bandit's allocation periods from the promotions history (results database)."""
    if experiment.allocation != "bandit":
        return []
    with engine_for(settings, url).connect() as conn:
        return allocation.allocation_periods(conn, experiment, as_of)


@task(
    name="extract-aggregates",
    retries=3,
    retry_delay_seconds=RETRY_DELAYS,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
    task_run_name="extract-{experiment.key}",
)
def extract_aggregates(
    settings: Settings,
    url: str,
    experiment: Experiment,
    as_of: datetime,
    full_refresh: bool = False,
    periods: list[Period] | None = None,
) -> tuple[list[SufficientStats], ExposureSummary]:
    """Sufficient statistics (incremental refresh or one full pass) and the exposure summary.

    In the warehouse (ABFLOW_WAREHOUSE_URL, abflow/tasks/engines.py) when it is not the
    results database.
    A bandit's `periods` add its per-(arm, allocation period) rows in the same pass.
    """
    starts = [p.start for p in periods or []]
    elsewhere = engines.is_elsewhere(settings, url)
    if elsewhere and not elsewhere.startswith("postgres"):
        return engines.extract_elsewhere(
            settings, elsewhere, experiment, as_of, full_refresh, starts
        )
    with engine_for(settings, elsewhere or url).connect() as conn:
        # Repeatable read: both queries see the same snapshot of a table being appended to.
        # A refresh racing another one of the same experiment fails to serialise and is retried.
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            if settings.incremental:
                stats, info = incremental.fetch_sufficient_stats_incremental(
                    conn,
                    experiment,
                    as_of,
                    assignments=settings.assignments_source,
                    events=settings.events_source,
                    late_lookback_hours=settings.late_lookback_hours,
                    full_refresh=full_refresh,
                    periods=starts,
                )
                get_run_logger().info(
                    "%s: %s refresh (%s), events from %s, %d unit(s) recomputed%s",
                    experiment.key,
                    info.mode,
                    info.reason,
                    info.events_from.isoformat(),
                    info.units_recomputed,
                    "; full scan of events for " + ", ".join(info.full_scans)
                    if info.full_scans
                    else "",
                )
            else:
                stats = extract.fetch_sufficient_stats(
                    conn,
                    experiment,
                    as_of,
                    assignments=settings.assignments_source,
                    events=settings.events_source,
                    periods=starts,
                )
            exposure = extract.fetch_exposure_summary(
                conn, experiment, as_of, assignments=settings.assignments_source
            )
    return stats, exposure


@task(
    name="write-results",
    retries=3,
    retry_delay_seconds=RETRY_DELAYS,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
    task_run_name="write-{result.run.experiment_key}",
)
def write_results(
    settings: Settings,
    url: str,
    result: ExperimentResult,
    experiment: Experiment,
    backfill: bool = False,
) -> str | None:
    """Replace this (experiment, as_of) in one transaction; auto-promote or reweight if allowed.

    Only the newest run of an unpinned config may change it, never a backfill
    (promotion.apply_run_outcome, checked under the experiment's lock in this transaction).
    """
    with engine_for(settings, url).begin() as conn:
        writer.lock_experiment(conn, result.run.experiment_key, settings.lock_timeout_seconds)
        writer.write_result(conn, result)
        return promotion.apply_run_outcome(conn, experiment, result, backfill=backfill)


@task(
    name="record-failure",
    retries=3,
    retry_delay_seconds=RETRY_DELAYS,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
)
def record_failure(settings: Settings, url: str, result: ExperimentResult) -> None:
    """Record a failed run without replacing a good earlier result for the same as_of."""
    with engine_for(settings, url).begin() as conn:
        # Under the experiment's lock, so a concurrent write sees it when it checks for newer runs.
        writer.lock_experiment(conn, result.run.experiment_key, settings.lock_timeout_seconds)
        writer.record_failed_run(conn, result)
