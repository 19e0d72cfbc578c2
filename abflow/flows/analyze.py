"""The analysis flow: every running experiment (or the given keys) as of one instant."""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from prefect import flow, get_run_logger
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from abflow import progress
from abflow.as_of import check_not_future, utc
from abflow.bandit_periods import Period
from abflow.definitions import Experiment
from abflow.redact import one_line
from abflow.results import CheckOutcome, ExposureSummary, SufficientStats, failed_run
from abflow.settings import Settings, get_settings
from abflow.tasks.alerts import publish_digest, publish_failure_events, publish_run_events, quietly
from abflow.tasks.analysis import compute_statistics, validate_data
from abflow.tasks.artifacts import publish_artifacts
from abflow.tasks.metrics import push_metrics
from abflow.tasks.warehouse import (
    allocation_periods,
    check_schema_version,
    extract_aggregates,
    load_experiments,
    record_failure,
    refresh_window,
    write_results,
)
from abflow.warehouse.engine import embedded_url


def resolve_url(settings: Settings) -> str:
    """The configured warehouse URL, or the embedded server's."""
    return settings.database_url or embedded_url(settings.pgdata)


@dataclass(frozen=True)
class _Pending:
    """The in-flight warehouse work of one experiment."""

    experiment: Experiment
    started: datetime
    extracted: PrefectFuture[tuple[list[SufficientStats], ExposureSummary]]
    checks: PrefectFuture[list[CheckOutcome]]
    periods: list[Period]


def _submit(
    settings: Settings, url: str, experiment: Experiment, as_of: datetime, full_refresh: bool
) -> _Pending:
    """Start extraction and validation; both run on the task runner's worker threads."""
    since = (
        refresh_window(settings, url, experiment, as_of, full_refresh)
        if settings.incremental
        else None
    )
    # A bandit's allocation periods (weights in force from each reweight): per-period rows in
    # the same pass, period-weighted estimates and SRM against the weights actually served.
    periods = allocation_periods(settings, url, experiment, as_of)
    return _Pending(
        experiment=experiment,
        started=datetime.now(UTC),
        extracted=extract_aggregates.submit(
            settings, url, experiment, as_of, full_refresh, periods
        ),
        checks=validate_data.submit(settings, url, experiment, as_of, since),
        periods=periods,
    )


def _finish(
    settings: Settings,
    url: str,
    p: _Pending,
    as_of: datetime,
    flow_run_id: str | None,
    backfill: bool,
) -> dict[str, Any]:
    """Statistics, the transactional write (with auto-promotion unless a backfill), artifacts."""
    stats, exposure = p.extracted.result()
    result = compute_statistics(
        uuid4(),
        p.experiment,
        as_of,
        flow_run_id,
        p.started,
        datetime.now(UTC),
        stats,
        exposure,
        p.checks.result(),
        p.periods,
    )
    promo = write_results(settings, url, result, p.experiment, backfill)
    publish_artifacts(result, promo)
    quietly(lambda: publish_run_events(settings, url, result, backfill, promo), "abflow events")
    rec = result.recommendation
    return {
        "experiment_key": p.experiment.key,
        "status": result.run.status,
        "decision": rec.decision if rec else None,
        "variant_key": rec.variant_key if rec else None,
        "promotion": promo,
        "run_id": str(result.run.run_id),
    }


def _record_failure(
    settings: Settings, url: str, key: str, as_of: datetime, fr_id: str | None, message: str
) -> dict[str, Any]:
    logger = get_run_logger()
    logger.error("experiment %s failed: %s", key, message)
    now = datetime.now(UTC)
    try:
        record_failure(
            settings,
            url,
            failed_run(
                run_id=uuid4(),
                experiment_key=key,
                as_of=as_of,
                flow_run_id=fr_id,
                started_at=now,
                finished_at=now,
                message=message,
            ),
        )
    except Exception as rec_exc:
        logger.error("could not record the failure of %s: %s", key, rec_exc)
    return {
        "experiment_key": key,
        "status": "failed",
        "decision": None,
        "variant_key": None,
        "promotion": None,
        "message": message,
    }


# Modules the statistics step imports on first use (the inference, health checks and decisions
# with NumPy and SciPy.special; abflow.stats.power solves with SciPy's brentq). Imports hold the
# GIL but the flow only waits while the warehouse aggregates, so they are loaded then, off the
# path of every run (~0.6 s).
_STATISTICS_IMPORTS = ("abflow.pipeline", "scipy.optimize")


def _import_while_waiting(modules: tuple[str, ...], after: list[PrefectFuture[Any]]) -> None:
    """Import `modules` on a daemon thread once `after` are done (a second import waits for it).

    `after` are the data-quality checks: until they finish, they and the extraction keep both
    of a small machine's cores busy in the warehouse, and importing beside them only slows them.
    """

    def load() -> None:
        for future in after:
            future.wait()
        for name in modules:
            importlib.import_module(name)

    threading.Thread(target=load, name="abflow-imports", daemon=True).start()


def analyze_all(
    settings: Settings,
    url: str,
    experiments: list[Experiment],
    as_of: datetime,
    broken: dict[str, str] | None = None,
    full_refresh: bool = False,
    backfill: bool = False,
) -> list[dict[str, Any]]:
    """Analyse each experiment; one failure is recorded and never stops the others.

    A backfill writes results only: it never changes experiment_config.
    """
    fr_id = flow_run.get_id()
    summaries = [
        _record_failure(settings, url, key, as_of, fr_id, f"invalid definition: {msg}")
        for key, msg in sorted((broken or {}).items())
    ]
    # Bounded concurrency: at most max_concurrency experiments' queries in flight at once.
    size = settings.max_concurrency
    for batch in (experiments[i : i + size] for i in range(0, len(experiments), size)):
        pending: list[_Pending | tuple[Experiment, str]] = []
        for e in batch:
            try:
                pending.append(_submit(settings, url, e, as_of, full_refresh))
            except Exception as exc:  # log and skip, as jetstream does
                pending.append((e, one_line(exc)))
        _import_while_waiting(
            _STATISTICS_IMPORTS, [p.checks for p in pending if not isinstance(p, tuple)]
        )
        for p in pending:
            if isinstance(p, tuple):
                summaries.append(_record_failure(settings, url, p[0].key, as_of, fr_id, p[1]))
                continue
            try:
                summaries.append(_finish(settings, url, p, as_of, fr_id, backfill))
                progress.emit("experiment_done", **summaries[-1])
            except Exception as exc:  # one experiment never stops the others
                message = one_line(exc)
                summaries.append(
                    _record_failure(settings, url, p.experiment.key, as_of, fr_id, message)
                )
    failed = [s["experiment_key"] for s in summaries if s["status"] == "failed"]
    if failed:
        quietly(
            lambda: publish_failure_events(settings, url, failed, as_of, fr_id, backfill),
            "abflow events",
        )
    return sorted(summaries, key=lambda s: s["experiment_key"])


@flow(
    name="analyze-experiments",
    task_runner=ThreadPoolTaskRunner(max_workers=4),  # type: ignore[arg-type]
    log_prints=True,
)
def analyze_experiments(
    experiment_keys: list[str] | None = None,
    as_of: datetime | None = None,
    full_refresh: bool = False,
) -> list[dict[str, Any]]:
    """Analyse running experiments (or the given keys) with data up to as_of (default: now).

    full_refresh recomputes the incremental partials from all events (late arrivals included).
    """
    when = utc(as_of or datetime.now(UTC))
    check_not_future(when, "as_of")  # before anything is written, migrations included
    settings = get_settings()
    url = resolve_url(settings)
    check_schema_version(settings, url)
    experiments, broken = load_experiments(settings, url, experiment_keys)
    summaries = analyze_all(settings, url, experiments, when, broken, full_refresh)
    push_metrics(settings, url, experiments)
    quietly(lambda: publish_digest(settings, url, when), "abflow digest")
    failed = [s["experiment_key"] for s in summaries if s["status"] == "failed"]
    if failed:
        get_run_logger().warning("failed experiments: %s", ", ".join(failed))
    return summaries
