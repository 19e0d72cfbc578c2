"""Pure statistics core of abflow: sufficient statistics in, lifts and decisions data out."""

# Lazy (PEP 562): the pipeline's modules import the result models from here before a run
# starts, and the functions below bring NumPy and SciPy (~0.3 s); the flow imports those on a
# thread while the warehouse works (abflow/flows/analyze.py). Type checkers read the imports.
from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from abflow.stats.bayesian import NormalPrior, beta_binomial_chance_to_win
    from abflow.stats.comparison import compare
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
    from abflow.stats.power import (
        days_remaining,
        minimum_detectable_effect,
        sample_size_per_variant,
    )
    from abflow.stats.quantile import QuantileStats
    from abflow.stats.srm import SRM_THRESHOLD, chi_square_omnibus, srm_p_value

_MODULES = {
    "CompareResult": "abflow.stats.models",
    "MeanStats": "abflow.stats.models",
    "NormalPrior": "abflow.stats.bayesian",
    "ProportionStats": "abflow.stats.models",
    "QuantileStats": "abflow.stats.quantile",
    "RatioStats": "abflow.stats.models",
    "RegressionAdjustedRatioStats": "abflow.stats.models",
    "RegressionAdjustedStats": "abflow.stats.models",
    "SRM_THRESHOLD": "abflow.stats.srm",
    "Stats": "abflow.stats.models",
    "adjust_p_values": "abflow.stats.multiple_testing",
    "adjusted_ci_alpha": "abflow.stats.multiple_testing",
    "beta_binomial_chance_to_win": "abflow.stats.bayesian",
    "chi_square_omnibus": "abflow.stats.srm",
    "ci_levels": "abflow.stats.multiple_testing",
    "compare": "abflow.stats.comparison",
    "cuped_adjust": "abflow.stats.cuped",
    "cuped_theta": "abflow.stats.cuped",
    "days_remaining": "abflow.stats.power",
    "minimum_detectable_effect": "abflow.stats.power",
    "ratio_cuped_theta": "abflow.stats.cuped",
    "sample_size_per_variant": "abflow.stats.power",
    "srm_p_value": "abflow.stats.srm",
}


def __getattr__(name: str) -> Any:
    """Import a public name (or a submodule) on first use (module-level __getattr__, PEP 562)."""
    if name in _MODULES:
        value = getattr(import_module(_MODULES[name]), name)
    else:
        try:
            value = import_module(f"{__name__}.{name}")
        except ModuleNotFoundError:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value


# a literal list: linters and type checkers read the typing imports above as re-exports through
# it. The three lists agree (tests/unit/test_lazy_imports.py).
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
