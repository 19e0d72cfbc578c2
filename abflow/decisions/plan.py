"""The planned sample: units per variant the rule in force needs to detect the primary MDE."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal, Protocol, TypeVar

from abflow import stats as st
from abflow.definitions import Experiment
from abflow.stats.sequential import PLAN_OVER_TUNING

DEFAULT_RELATIVE_MDE = 0.05  # planned sample uses a 5% relative MDE when a metric sets none
# gbstats' default mixture tuning, used while the planned sample cannot be computed yet.
FALLBACK_TUNING = 5000.0


class _ArmRow(Protocol):
    @property
    def metric_key(self) -> str: ...
    @property
    def segment(self) -> str: ...
    @property
    def variant_key(self) -> str: ...


R = TypeVar("R", bound=_ArmRow)


def primary_control(experiment: Experiment, rows: Iterable[R]) -> R | None:
    """The overall-segment row of the primary metric's control arm, if any."""
    key, control = experiment.primary_metric.key, experiment.control.key
    return next(
        (
            r
            for r in rows
            if r.metric_key == key and r.segment == "all" and r.variant_key == control
        ),
        None,
    )


def planned_sample(
    experiment: Experiment, control_mean: float | None, control_variance: float | None
) -> int | None:
    """Units per variant for the primary MDE at the configured power, under the rule in force."""
    m = experiment.primary_metric
    a = experiment.analysis
    if control_mean is None or not math.isfinite(control_mean) or control_mean == 0:
        return None
    mde = m.mde or DEFAULT_RELATIVE_MDE
    kind: Literal["proportion", "mean"] = "proportion" if m.kind == "proportion" else "mean"
    std = math.sqrt(control_variance) if control_variance and control_variance > 0 else None
    if kind == "mean" and not std:
        return None
    # The primary family is corrected across treatments, so plan each comparison at α/(k−1).
    variants = len(experiment.variants) if a.correction != "none" else 2
    baseline = abs(control_mean)
    # A relative MDE from a high baseline (97% + 5%) leaves the unit interval: plan for the
    # same-sized effect in the direction that stays a rate (the test is two-sided anyway).
    for effect in (mde, -mde):
        try:
            n = st.sample_size_per_variant(
                baseline,
                effect,
                relative=True,
                alpha=a.alpha,
                power=a.power,
                variants=variants,
                kind=kind,
                std=std,
                sequential=a.sequential,
            )
        except ValueError:
            continue
        return max(int(n), a.min_sample_size)
    return None


def mixture_tuning(experiment: Experiment, planned: int | None) -> float:
    """N* of the confidence sequence: configured, else a quarter of the planned total."""
    configured = experiment.analysis.sequential_tuning
    if configured is not None:
        return float(configured)
    return float(2 * planned) / PLAN_OVER_TUNING if planned else FALLBACK_TUNING
