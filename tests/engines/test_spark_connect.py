"""The `sc://host:port` path: abflow as a Spark Connect client gives the numbers DuckDB gives.

The server is pyspark's own local Spark Connect server, started in a subprocess (a Spark Connect
client cannot share a process with the classic SparkSession the other tests use).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from abflow.definitions import Experiment
from abflow.demo_data import DEMO_EXPERIMENTS_DIR
from abflow.warehouse import extract
from abflow.warehouse.dialects import Source
from abflow.warehouse.engines import DuckDBWarehouse
from tests.conftest import DEMO_AS_OF, repo_root
from tests.engines.test_equality import _stats_equal

pytest.importorskip("pyspark")


def test_spark_connect_client_matches_duckdb(
    lake_dir: dict[str, str], demo_experiments: list[Experiment]
) -> None:
    if shutil.which("java") is None:
        pytest.fail("java is missing: .ci/run installs openjdk-17-jre-headless")
    key = "checkout_button"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.engines.spark_connect_check",
            key,
            DEMO_AS_OF.isoformat(),
            lake_dir["assignments"],
            lake_dir["events"],
            str(DEMO_EXPERIMENTS_DIR),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=repo_root(),
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["client"] == "pyspark.sql.connect.session"

    from abflow.results import SufficientStats

    experiment = {e.key: e for e in demo_experiments}[key]
    sources = {k: Source.parse(v) for k, v in lake_dir.items()}
    duck = DuckDBWarehouse(":memory:")
    with duck.session() as executor:
        want, exposure = extract.analyse_in_warehouse(executor, experiment, DEMO_AS_OF, sources)
    duck.close()
    stats = [SufficientStats(**s) for s in got["stats"]]
    assert _stats_equal(want, stats) == []
    assert exposure is not None
    assert got["exposure"]["units_by_variant"] == exposure.units_by_variant
