"""prefect.yaml entrypoint `flows/analyze.py`: the flows live in `abflow.flows.analyze`."""

from abflow.flows.analyze import (
    analyze_all,
    analyze_experiments,
    resolve_url,
)

__all__ = [
    "analyze_all",
    "analyze_experiments",
    "resolve_url",
]
