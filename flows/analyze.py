"""The analysis flow: every running experiment (or the given keys) as of one instant."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from abflow.definitions import Experiment
from abflow.pipeline import failed_run
from abflow.settings import Settings, get_settings
from abflow.warehouse.engine import embedded_url
from tasks.analysis import compute_statistics, validate_data
from tasks.artifacts import publish_artifacts
from tasks.warehouse import (
    extract_aggregates,
    load_experiments,
    prepare_warehouse,
    previous_units,
    record_failure,
    write_results,
)


def resolve_url(settings: Settings) -> str:
    """The configured warehouse URL, or the embedded server's."""
    return settings.database_url or embedded_url(settings.pgdata)


def _analyze_one(
    settings: Settings, url: str, experiment: Experiment, as_of: datetime, flow_run_id: str | None
) -> dict[str, Any]:
    run_id = uuid4()
    started = datetime.now(UTC)
    extracted = extract_aggregates.submit(settings, url, experiment, as_of)
    before = previous_units(settings, url, experiment.key, as_of)
    checks = validate_data.submit(settings, url, experiment, as_of, before)
    stats, exposure = extracted.result()
    result = compute_statistics(
        run_id,
        experiment,
        as_of,
        flow_run_id,
        started,
        datetime.now(UTC),
        stats,
        exposure,
        checks.result(),
    )
    promo = write_results(settings, url, result, experiment.decision.auto_promote)
    publish_artifacts(result, promo)
    rec = result.recommendation
    return {
        "experiment_key": experiment.key,
        "status": result.run.status,
        "decision": rec.decision if rec else None,
        "variant_key": rec.variant_key if rec else None,
        "promotion": promo,
        "run_id": str(run_id),
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


def analyze_all(
    settings: Settings,
    url: str,
    experiments: list[Experiment],
    as_of: datetime,
    broken: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Analyse each experiment; one failure is recorded and never stops the others."""
    fr_id = flow_run.get_id()
    summaries = [
        _record_failure(settings, url, key, as_of, fr_id, f"invalid definition: {msg}")
        for key, msg in sorted((broken or {}).items())
    ]
    for e in experiments:
        try:
            summaries.append(_analyze_one(settings, url, e, as_of, fr_id))
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}".splitlines()[0]
            summaries.append(_record_failure(settings, url, e.key, as_of, fr_id, message))
    return sorted(summaries, key=lambda s: s["experiment_key"])


@flow(
    name="analyze-experiments",
    task_runner=ThreadPoolTaskRunner(max_workers=4),  # type: ignore[arg-type]
    log_prints=True,
)
def analyze_experiments(
    experiment_keys: list[str] | None = None,
    as_of: datetime | None = None,
) -> list[dict[str, Any]]:
    """Analyse running experiments (or the given keys) with data up to as_of (default: now)."""
    settings = get_settings()
    url = resolve_url(settings)
    prepare_warehouse(settings, url)
    when = as_of or datetime.now(UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    experiments, broken = load_experiments(settings, url, experiment_keys)
    summaries = analyze_all(settings, url, experiments, when, broken)
    failed = [s["experiment_key"] for s in summaries if s["status"] == "failed"]
    if failed:
        get_run_logger().warning("failed experiments: %s", ", ".join(failed))
    return summaries
