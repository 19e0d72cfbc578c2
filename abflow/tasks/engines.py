"""The warehouse side of a run when it is not the results database: URL, extraction, checks.

`ABFLOW_WAREHOUSE_URL` (or a Prefect block named by `ABFLOW_WAREHOUSE_BLOCK`) says where the
assignments and events live and where the aggregation SQL runs; results are still written to
the PostgreSQL results database. The URL is a secret: it never becomes a task parameter, a log
line or a state message (errors are redacted before they leave these functions).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from abflow.definitions import Experiment
from abflow.results import CheckOutcome, ExposureSummary, SufficientStats
from abflow.settings import Settings
from abflow.warehouse import extract, incremental, sql_checks
from abflow.warehouse.engines import open_warehouse, redact

log = logging.getLogger(__name__)


def load_block_url(name: str) -> str:
    """The URL held by a Prefect block: `secret/NAME`, `sqlalchemy-connector/NAME` or NAME.

    A bare NAME is looked up as a Secret first, then as a SqlAlchemyConnector.
    """
    kind, _, block = name.rpartition("/")
    errors: list[str] = []
    if kind in ("", "secret"):
        from prefect.blocks.system import Secret

        try:
            return str(Secret.load(block).get())  # type: ignore[union-attr]
        except Exception as exc:  # not a Secret (or missing): try the connector
            errors.append(f"Secret: {type(exc).__name__}")
    if kind in ("", "sqlalchemy-connector"):
        try:
            from prefect_sqlalchemy import SqlAlchemyConnector
        except ImportError:
            errors.append("SqlAlchemyConnector: prefect-sqlalchemy not installed")
        else:
            try:
                connector: Any = SqlAlchemyConnector.load(block)
                info = connector.connection_info
                if hasattr(info, "create_url"):
                    return str(info.create_url().render_as_string(hide_password=False))
                return str(info)
            except Exception as exc:
                errors.append(f"SqlAlchemyConnector: {type(exc).__name__}")
    raise ValueError(f"warehouse block {name!r} not found ({'; '.join(errors)})")


def warehouse_url(settings: Settings, results_url: str) -> str:
    """The warehouse URL: the block, ABFLOW_WAREHOUSE_URL, or else the results database."""
    if settings.warehouse_block:
        return load_block_url(settings.warehouse_block)
    return settings.warehouse_url or results_url


def is_elsewhere(settings: Settings, results_url: str) -> str | None:
    """The warehouse URL when the warehouse is not the results database, else None."""
    url = warehouse_url(settings, results_url)
    return None if url == results_url else url


def extract_elsewhere(
    settings: Settings,
    url: str,
    experiment: Experiment,
    as_of: datetime,
    full_refresh: bool,
    periods: Sequence[datetime] = (),
) -> tuple[list[SufficientStats], ExposureSummary]:
    """Sufficient statistics and exposure summary on a DuckDB or Spark warehouse."""
    try:
        warehouse = open_warehouse(url)
        sources = extract.default_sources(settings.assignments_source, settings.events_source)
        with warehouse.session() as executor:
            if settings.incremental and executor.dialect == "duckdb":
                incremental.ensure_state_tables(executor)
                stats, info = incremental.refresh(
                    executor,
                    experiment,
                    as_of,
                    sources,
                    source_names=(settings.assignments_source, settings.events_source),
                    late_lookback_hours=settings.late_lookback_hours,
                    full_refresh=full_refresh,
                    periods=periods,
                )
                log.info(
                    "%s: %s refresh (%s)%s",
                    experiment.key,
                    info.mode,
                    info.reason,
                    "; full scan of events for " + ", ".join(info.full_scans)
                    if info.full_scans
                    else "",
                )
                _, exposure = extract.analyse_in_warehouse(
                    executor, experiment, as_of, sources, stats=False
                )
            else:
                # Spark: always a full pass (incremental refresh keeps per-unit partials in
                # tables it updates in place; a full pass is one scan on Spark anyway)
                stats, exposure = extract.analyse_in_warehouse(
                    executor, experiment, as_of, sources, periods=periods
                )
    except Exception as exc:
        raise RuntimeError(redact(f"{type(exc).__name__}: {exc}", url)) from None
    assert exposure is not None
    return stats, exposure


def exposure_elsewhere(
    settings: Settings, url: str, experiment: Experiment, as_of: datetime
) -> ExposureSummary:
    """Only the exposure summary on a DuckDB or Spark warehouse (`abflow validate`)."""
    try:
        sources = extract.default_sources(settings.assignments_source, settings.events_source)
        with open_warehouse(url).session() as executor:
            _, exposure = extract.analyse_in_warehouse(
                executor, experiment, as_of, sources, stats=False
            )
    except Exception as exc:
        raise RuntimeError(redact(f"{type(exc).__name__}: {exc}", url)) from None
    assert exposure is not None
    return exposure


def checks_elsewhere(
    settings: Settings,
    url: str,
    experiment: Experiment,
    as_of: datetime,
    previous_units: int | None,
) -> list[CheckOutcome]:
    """The data-quality suites as SQL on a DuckDB or Spark warehouse (GX cannot reach them)."""
    try:
        warehouse = open_warehouse(url)
        sources = extract.default_sources(settings.assignments_source, settings.events_source)
        with warehouse.session() as executor:
            return sql_checks.run_sql_checks(
                executor, experiment, as_of, sources, previous_units=previous_units
            )
    except Exception as exc:
        raise RuntimeError(redact(f"{type(exc).__name__}: {exc}", url)) from None
