"""Pure statistics core of abflow: sufficient statistics in, lifts and decisions data out."""

from abflow.stats.bayesian import NormalPrior, beta_binomial_chance_to_win
from abflow.stats.compare import compare
from abflow.stats.cuped import cuped_adjust, cuped_theta, ratio_cuped_theta
from abflow.stats.models import (
    CompareResult,
    MeanStats,
    ProportionStats,
    RatioStats,
    RegressionAdjustedRatioStats,
    RegressionAdjustedStats,
    Stats,
)
from abflow.stats.multiple_testing import adjust_p_values, adjusted_ci_alpha, ci_levels
from abflow.stats.power import days_remaining, minimum_detectable_effect, sample_size_per_variant
from abflow.stats.quantile import QuantileStats
from abflow.stats.srm import SRM_THRESHOLD, chi_square_omnibus, srm_p_value

__all__ = [
    "SRM_THRESHOLD",
    "CompareResult",
    "MeanStats",
    "NormalPrior",
    "ProportionStats",
    "QuantileStats",
    "RatioStats",
    "RegressionAdjustedRatioStats",
    "RegressionAdjustedStats",
    "Stats",
    "adjust_p_values",
    "adjusted_ci_alpha",
    "beta_binomial_chance_to_win",
    "chi_square_omnibus",
    "ci_levels",
    "compare",
    "cuped_adjust",
    "cuped_theta",
    "days_remaining",
    "minimum_detectable_effect",
    "ratio_cuped_theta",
    "sample_size_per_variant",
    "srm_p_value",
]
