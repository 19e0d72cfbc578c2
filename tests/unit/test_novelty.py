"""Novelty and primacy: lift_by_exposure_age rows and the novelty_effect warning (abflow.novelty).

The cohort statistics are crafted here; that the warehouse builds them right (vs pandas) is
tests/engines/test_quantile_cohort_sql.py.
"""

from __future__ import annotations

import math
import uuid

import numpy as np
import pytest
from scipy import stats as sps

from abflow.definitions import parse_experiment
from abflow.novelty import COHORT_PREFIX, cohort_lifts, novelty_check, split_cohort_stats
from abflow.results import SufficientStats

RUN = uuid.UUID(int=3)


def _experiment(**analysis):
    return parse_experiment(
        {
            "key": "nov",
            "name": "novelty",
            "start_at": "2026-01-01T00:00:00Z",
            "variants": [
                {"key": "c", "weight": 0.5, "control": True},
                {"key": "t", "weight": 0.5},
            ],
            "metrics": [
                {"key": "conv", "kind": "proportion", "event": "buy", "role": "primary"},
                {"key": "visits", "kind": "mean", "event": "visit", "value": "count"},
                {"key": "p90", "kind": "quantile", "quantile": 0.9, "event": "load"},
            ],
            "analysis": {"sequential": False, **analysis},
        }
    )


def _cohorts(rates_c, rates_t, n=4000, visits_c=None, visits_t=None):
    """Cohort rows: conversions at the given rate per cohort; visits as Poisson means."""
    rows = []
    labels = ["0-6", "7-13", "14-20", "21+"]
    for label, rc, rt, vc, vt in zip(
        labels, rates_c, rates_t, visits_c or rates_c, visits_t or rates_t, strict=False
    ):
        for arm, rate, mu in (("c", rc, vc), ("t", rt, vt)):
            seg = f"{COHORT_PREFIX}{label}"
            conv = round(n * rate)
            rows.append(SufficientStats("conv", arm, seg, n, n, conv, conv))
            # Poisson counts with mean mu: Σy = n mu, Σy² = n (mu + mu²)
            rows.append(SufficientStats("visits", arm, seg, n, n, n * mu, n * (mu + mu * mu)))
    return rows


def test_split_keeps_the_analysis_rows_apart() -> None:
    plain = SufficientStats("conv", "c", "all", 10, 10, 1, 1)
    cohort = SufficientStats("conv", "c", f"{COHORT_PREFIX}0-6", 10, 10, 1, 1)
    assert split_cohort_stats([plain, cohort]) == ([plain], [cohort])


def test_rows_are_welch_lifts_per_cohort() -> None:
    e = _experiment()
    lifts = cohort_lifts(RUN, e, _cohorts([0.10, 0.10, 0.10], [0.12, 0.11, 0.10]))
    rows = {(cl.row.metric_key, cl.row.cohort): cl.row for cl in lifts}
    assert {k[1] for k in rows} == {"0-6", "7-13", "14-20"}  # no 21+ rows were given
    assert all(k[0] != "p90" for k in rows)  # quantiles have no cohort breakdown
    r = rows[("conv", "0-6")]
    assert (r.first_day, r.last_day, r.control_units) == (0, 6, 4000)
    assert r.rel_lift == pytest.approx(0.2)
    # independent: delta-method relative lift with Welch df from scipy's t
    pc, pt = 0.10, 0.12
    var = pt * (1 - pt) / (pc**2 * 4000) + pc * (1 - pc) * pt**2 / (pc**4 * 4000)
    a, b = pt * (1 - pt) / 4000, pc * (1 - pc) / 4000
    df = (a + b) ** 2 / (a * a / 3999 + b * b / 3999)
    half = sps.t.ppf(0.975, df) * math.sqrt(var)
    assert r.rel_ci_low == pytest.approx(0.2 - half, rel=1e-9)
    assert r.rel_ci_high == pytest.approx(0.2 + half, rel=1e-9)
    assert rows[("conv", "14-20")].rel_lift == pytest.approx(0.0, abs=1e-12)


def test_fires_when_the_first_week_lift_fades() -> None:
    e = _experiment()
    stats = _cohorts([0.10, 0.10, 0.10, 0.10], [0.13, 0.10, 0.10, 0.10])
    check = novelty_check(e, cohort_lifts(RUN, e, stats))
    assert check is not None and check.check_name == "novelty_effect"
    assert check.severity == "warning" and not check.passed
    assert check.observed is not None and check.observed < 0.01
    assert "novelty effect" in check.details["note"] and "conv" in check.details["note"]
    t = check.details["tests"]["conv"]["t"]
    # independent: the z of the difference from the same lifts and standard errors
    lifts = {
        cl.row.cohort: cl.result
        for cl in cohort_lifts(RUN, e, stats)
        if cl.row.metric_key == "conv"
    }
    w = np.array([1 / lifts[k].std_error ** 2 for k in ("7-13", "14-20", "21+")])
    later = float(np.dot(w, [lifts[k].estimate for k in ("7-13", "14-20", "21+")]) / w.sum())
    z = (lifts["0-6"].estimate - later) / math.sqrt(lifts["0-6"].std_error ** 2 + 1 / w.sum())
    assert t["z"] == pytest.approx(z)
    assert t["p_adjusted"] == pytest.approx(min(1.0, 2 * sps.norm.sf(abs(z)) * 2))


def test_primacy_when_the_effect_grows() -> None:
    e = _experiment()
    stats = _cohorts([0.10] * 4, [0.10, 0.13, 0.13, 0.13])
    check = novelty_check(e, cohort_lifts(RUN, e, stats))
    assert check is not None and not check.passed and "primacy effect" in check.details["note"]


def test_silent_on_a_steady_lift() -> None:
    e = _experiment()
    stats = _cohorts([0.10] * 4, [0.12] * 4)
    check = novelty_check(e, cohort_lifts(RUN, e, stats))
    assert check is not None and check.passed and check.observed == pytest.approx(1.0)


def test_not_testable_without_a_later_cohort_and_off_when_disabled() -> None:
    e = _experiment()
    check = novelty_check(e, cohort_lifts(RUN, e, _cohorts([0.1], [0.12])))
    assert check is not None and check.passed and check.observed is None
    assert novelty_check(_experiment(exposure_age=False), []) is None


def test_false_alarm_rate_on_clean_data_by_simulation() -> None:
    """Steady true lift, binomial noise: the warning fires at most about alpha of the time."""
    e = _experiment()
    rng = np.random.default_rng(2026)
    fired = 0
    reps = 400
    n = 3000
    for _ in range(reps):
        rows = []
        for label in ("0-6", "7-13", "14-20", "21+"):
            for arm, p in (("c", 0.10), ("t", 0.115)):
                conv = int(rng.binomial(n, p))
                rows.append(
                    SufficientStats("conv", arm, f"{COHORT_PREFIX}{label}", n, n, conv, conv)
                )
        check = novelty_check(e, cohort_lifts(RUN, e, rows))
        fired += check is not None and not check.passed
    assert fired / reps <= 0.01 + 0.015
