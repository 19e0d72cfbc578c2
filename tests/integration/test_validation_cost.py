"""`abflow run` must not pay for Great Expectations (~3 s to import) unless Data Docs are wanted."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

from sqlalchemy import Engine

from abflow.settings import Settings
from tests.conftest import repo_root

CODE = """
import sys
from datetime import datetime
from pathlib import Path
from abflow.definitions import load_experiment_files
from abflow.settings import Settings
from abflow.warehouse.engine import make_engine
from abflow.warehouse.validate import validate_postgres
import abflow.cli, flows.analyze, tasks.analysis

url, schema, as_of = sys.argv[1:4]
experiment = load_experiment_files([Path("abflow/experiments/followup_timing.yaml")])[0]
engine = make_engine(Settings(database_url=url, ABFLOW_SCHEMA=schema))
with engine.connect() as conn, conn.begin():
    outcomes = validate_postgres(
        conn, schema, experiment, datetime.fromisoformat(as_of),
        assignments_source="assignments", events_source="events",
    )
engine.dispose()
print(len(outcomes), "great_expectations" in sys.modules)
"""


def test_validation_on_postgres_never_imports_great_expectations(
    engine: Engine, settings: Settings
) -> None:
    """The CLI, the flow and a whole validation (here of an empty window: failures sampled too)
    run in a fresh interpreter without importing GX."""
    as_of = datetime(2026, 11, 21, tzinfo=UTC).isoformat()
    out = subprocess.run(
        [sys.executable, "-c", CODE, str(settings.database_url), settings.schema_name, as_of],
        cwd=repo_root(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    count, imported = out.stdout.split()
    assert int(count) >= 10 and imported == "False"
