"""Backfill: the analysis as of the end of each day in a date range (a daily time series)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from prefect import flow, get_run_logger
from pydantic import Field

from abflow import progress
from abflow.as_of import check_backfill_end, day_ends
from abflow.flows.analyze import analyze_all, resolve_url
from abflow.settings import get_settings
from abflow.tasks.metrics import push_metrics
from abflow.tasks.warehouse import check_schema_version, load_experiments

# Prefect's server ignores JSON Schema `format` when it checks parameters; a pattern makes
# enforce_parameter_schema reject non-dates (the UI keeps its date picker from `format`).
Day = Annotated[date, Field(json_schema_extra={"pattern": r"^\d{4}-\d{2}-\d{2}$"})]


@flow(name="backfill-experiments", log_prints=True)
def backfill_experiments(
    start: Day,
    end: Day,
    experiments: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Recompute each day's cumulative analysis in [start, end]; reruns replace, never duplicate.

    Complete days only (end must be over); results are written, experiment_config never changes.
    """
    days = day_ends(start, end)
    check_backfill_end(end, "end")  # before anything is written, migrations included
    settings = get_settings()
    url = resolve_url(settings)
    check_schema_version(settings, url)
    chosen, broken = load_experiments(settings, url, experiments)
    logger = get_run_logger()
    out: list[dict[str, Any]] = []
    for as_of in days:
        # Only experiments already started by that day have anything to analyse.
        active = [e for e in chosen if e.start_at < as_of]
        logger.info("as of %s: %d experiment(s)", as_of.isoformat(), len(active))
        progress.emit("day_started", as_of=as_of, experiments=len(active))
        for s in analyze_all(settings, url, active, as_of, broken, backfill=True):
            out.append({**s, "as_of": as_of.isoformat()})
    push_metrics(settings, url, chosen)
    return out
