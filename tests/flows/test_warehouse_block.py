"""The warehouse URL from a Prefect block, and never in a message: Secret, SqlAlchemyConnector."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from abflow.definitions import load_experiment_files
from abflow.demo_data import DEMO_EXPERIMENTS_DIR
from abflow.settings import Settings
from abflow.warehouse.engines import redact

SECRET = "s3cr3t-Pa55word"


def test_warehouse_url_from_a_secret_block(prefect_harness: None, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from prefect.blocks.system import Secret

    from abflow.tasks.engines import warehouse_url

    url = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    Secret(value=url).save("abflow-test-warehouse", overwrite=True)
    settings = Settings(warehouse_block="abflow-test-warehouse")
    assert warehouse_url(settings, "postgresql://results") == url
    assert Settings(warehouse_block="secret/abflow-test-warehouse").warehouse_block
    assert warehouse_url(Settings(warehouse_block="secret/abflow-test-warehouse"), "x") == url


def test_warehouse_url_from_a_sqlalchemy_connector_block(prefect_harness: None) -> None:
    from prefect_sqlalchemy import ConnectionComponents, SqlAlchemyConnector

    from abflow.tasks.engines import warehouse_url

    SqlAlchemyConnector(
        connection_info=ConnectionComponents(
            driver="postgresql+psycopg",
            username="reader",
            password=SECRET,
            host="warehouse.internal",
            port=5432,
            database="events",
        )
    ).save("abflow-test-connector", overwrite=True)
    got = warehouse_url(Settings(warehouse_block="abflow-test-connector"), "results")
    assert got == f"postgresql+psycopg://reader:{SECRET}@warehouse.internal:5432/events"
    with pytest.raises(ValueError, match="not found") as missing:
        warehouse_url(Settings(warehouse_block="no-such-block"), "results")
    assert SECRET not in str(missing.value)


def test_the_url_is_redacted_from_settings_and_errors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from abflow.tasks.engines import extract_elsewhere

    url = f"sc://spark.internal:15002/;token={SECRET}"
    assert SECRET not in repr(Settings(warehouse_url=url))
    assert SECRET not in redact(f"cannot connect to {url} (token={SECRET})", url)
    pg = f"postgresql+psycopg://reader:{SECRET}@db/events"
    assert redact(f"connection to {pg} failed; password {SECRET} rejected", pg).count("***") == 2

    experiment = load_experiment_files([DEMO_EXPERIMENTS_DIR / "followup_timing.yaml"])[0]
    bad = f"duckdb:///{tmp_path}/no/such/dir/wh.duckdb?token={SECRET}"
    with pytest.raises(RuntimeError) as failure:
        extract_elsewhere(Settings(), bad, experiment, datetime(2026, 11, 21, tzinfo=UTC), False)
    assert SECRET not in str(failure.value)
    assert "wh.duckdb" in str(failure.value) and str(failure.value).count("\n") == 0
