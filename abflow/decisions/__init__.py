"""Decision rules, the planned sample and their simulation (pure; no I/O)."""

from abflow.decisions.plan import DEFAULT_RELATIVE_MDE, planned_sample
from abflow.decisions.rules import DecisionInputs, Recommendation, decide, required_sample

__all__ = [
    "DEFAULT_RELATIVE_MDE",
    "DecisionInputs",
    "Recommendation",
    "decide",
    "planned_sample",
    "required_sample",
]
