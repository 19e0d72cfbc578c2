"""abflow: warehouse-native A/B test analysis; `abflow.decide` runs the decision rules."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    # The one place the version lives is pyproject.toml; installed metadata carries it here.
    __version__ = version("abflow")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"


def decide(definition: Any, stats: Any, days_since_start: float) -> Any:
    """Recommendation for one experiment from per-arm sufficient statistics (see README)."""
    # Imported on first use so `import abflow` stays cheap for the CLI and the Prefect entrypoints.
    from abflow.decisions.library import decide as _decide

    return _decide(definition, stats, days_since_start)


__all__ = ["__version__", "decide"]
