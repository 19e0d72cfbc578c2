"""`tasks/artifacts.py` of the project layout: the code lives in `abflow.tasks.artifacts`."""

from abflow.tasks.artifacts import (
    publish_artifacts,
)

__all__ = [
    "publish_artifacts",
]
