"""The optional GX Data Docs site: `ABFLOW_GX_DATA_DOCS_DIR` gets GX's HTML of each validation."""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from abflow.settings import Settings
from abflow.warehouse.quality import run_expectations
from tests.conftest import DEMO_AS_OF


def test_a_validation_writes_a_data_docs_site_per_experiment(
    settings: Settings, engine: Engine, demo_loaded: dict[str, Any], tmp_path: Path
) -> None:
    e = demo_loaded["experiments"]["followup_timing"]
    outcomes = run_expectations(
        str(settings.database_url), settings.schema_name, e, DEMO_AS_OF, data_docs_dir=tmp_path
    )
    assert outcomes and all(o.passed for o in outcomes if o.severity == "critical")
    index = tmp_path / "followup_timing" / "index.html"
    assert index.is_file()
    pages = list((tmp_path / "followup_timing" / "validations").rglob("*.html"))
    assert {
        p.relative_to(tmp_path / "followup_timing" / "validations").parts[0] for p in pages
    } == {
        "assignments",
        "events",
        "variant_stats",
    }
    html = "\n".join(p.read_text(encoding="utf-8") for p in pages)
    text = re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))
    assert "Expectation Suite: assignments" in text
    assert "values must belong to this set: delay_30m delay_5m" in text
    assert "postgresql" not in html  # the connection string stays a GX config variable
