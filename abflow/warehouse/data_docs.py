"""Optional Great Expectations Data Docs: a static site of each run's validation results.

Set `ABFLOW_GX_DATA_DOCS_DIR` and every validation through GX (abflow.warehouse.quality) also
writes GX's own HTML to `<dir>/<experiment key>/index.html`: the suites, every expectation and
its result for the run just validated (older runs' pages stay beside it). A site that cannot be
written is a warning, never a failed check.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)
SITE = "abflow"


def write_data_docs(context: Any, directory: Path) -> Path | None:
    """Build the Data Docs of everything validated in this GX context into `directory`."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if SITE not in (context.config.data_docs_sites or {}):
            context.add_data_docs_site(
                SITE,
                {
                    "class_name": "SiteBuilder",
                    "store_backend": {
                        "class_name": "TupleFilesystemStoreBackend",
                        "base_directory": str(directory.resolve()),
                    },
                    "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                },
            )
        context.build_data_docs(site_names=[SITE])
    except Exception as exc:  # docs are a convenience: the outcomes are already computed
        logger.warning("GX Data Docs not written to %s: %s", directory, type(exc).__name__)
        return None
    return directory / "index.html"
