"""abflow on published A/B datasets nobody on the team made (the repo's sibling ../shared/datasets).

Each dataset is COPYed into the session schema's raw tables under its own experiment key and unit
prefix, then extracted, validated by the GX suites in PostgreSQL and assembled exactly as a flow
run would. Every figure is checked against a reference computed here with pandas and scipy from
the CSV itself. Skipped cleanly when the datasets are not there.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from psycopg import sql
from scipy.stats import chi2_contingency, chisquare
from sqlalchemy import Engine

from abflow.definitions import Experiment, parse_experiment
from abflow.pipeline import assemble_result
from abflow.results import ExperimentResult, InsightRow
from abflow.settings import Settings
from abflow.warehouse import extract
from abflow.warehouse.quality import run_expectations

DATASETS = Path(__file__).resolve().parents[3] / "shared" / "datasets"
AB_DATA = DATASETS / "ab_data.csv.gz"
COOKIE_CATS = DATASETS / "cookie_cats.csv"

ASSIGNMENT_COLUMNS = ["experiment_key", "unit_id", "variant_key", "assigned_at"]
EVENT_COLUMNS = ["unit_id", "event_name", "value", "occurred_at"]


# --- helpers ------------------------------------------------------------------------------------


def _copy(engine: Engine, schema: str, table: str, frame: pd.DataFrame) -> None:
    """COPY a frame into a raw table (CSV text built by pandas, no row inserts).

    Timestamps arrive as ISO text with an explicit UTC offset: formatting datetimes in to_csv
    costs seconds per 100k rows, string concatenation does not.
    """
    columns = list(frame.columns)
    statement = sql.SQL("copy {} ({}) from stdin (format csv)").format(
        sql.Identifier(schema, table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    payload = frame.to_csv(index=False, header=False)
    with engine.begin() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        with raw.cursor() as cur, cur.copy(statement) as copy:
            copy.write(payload)
        conn.exec_driver_sql(f"analyze {table}")


@dataclass(frozen=True)
class Analysed:
    """A run's assembled result with its checks by name."""

    result: ExperimentResult
    checks: dict[str, Any]

    def overall(self, metric: str) -> InsightRow:
        return next(
            i for i in self.result.insights if i.metric_key == metric and i.segment == "all"
        )

    def failed(self) -> dict[str, str]:
        return {c.check_name: c.severity for c in self.result.health_checks if not c.passed}


def _analyse(
    engine: Engine, pg_url: str, settings: Settings, e: Experiment, as_of: datetime
) -> Analysed:
    """Extraction, GX and assembly, as abflow.flows.analyze runs them for one experiment."""
    with engine.begin() as conn:
        stats = extract.fetch_sufficient_stats(
            conn, e, as_of, assignments="assignments", events="events"
        )
        exposure = extract.fetch_exposure_summary(conn, e, as_of, assignments="assignments")
    quality = run_expectations(pg_url, settings.schema_name, e, as_of)
    result = assemble_result(
        run_id=uuid.uuid4(),
        experiment=e,
        as_of=as_of,
        flow_run_id=None,
        started_at=as_of,
        finished_at=as_of,
        stats=stats,
        exposure=exposure,
        quality_checks=quality,
    )
    return Analysed(result, {c.check_name: c for c in result.health_checks})


def _two_proportion_p(conv_c: int, n_c: int, conv_t: int, n_t: int) -> float:
    """scipy's Pearson chi-square on the 2x2 table = the pooled two-proportion z-test."""
    table = [[conv_c, n_c - conv_c], [conv_t, n_t - conv_t]]
    return float(chi2_contingency(table, correction=False).pvalue)


# --- ab_data: Udacity landing-page test -----------------------------------------------------------

AB_KEY = "ds_ab_data"
AB_AS_OF = datetime(2017, 1, 25, tzinfo=UTC)


@pytest.fixture(scope="module")
def ab_data() -> pd.DataFrame:
    if not AB_DATA.is_file():
        pytest.skip(f"{AB_DATA} not present (the shared datasets sit beside the repository)")
    return pd.read_csv(AB_DATA)


@pytest.fixture(scope="module")
def ab_run(
    ab_data: pd.DataFrame, engine: Engine, pg_url: str, settings: Settings
) -> tuple[Experiment, Analysed]:
    """Variant = group; a row whose landing_page disagrees adds an exposure to the other arm."""
    units = "ds_ab_" + ab_data["user_id"].astype(str)
    exposures = pd.DataFrame(
        {
            "experiment_key": AB_KEY,
            "unit_id": units,
            "variant_key": ab_data["group"],
            "assigned_at": ab_data["timestamp"] + "+00",  # the log's clock is UTC
        }
    )
    mismatch = (ab_data["group"] == "treatment") != (ab_data["landing_page"] == "new_page")
    other = exposures[mismatch].assign(
        variant_key=np.where(ab_data.loc[mismatch, "group"] == "control", "treatment", "control")
    )
    converted = ab_data["converted"] == 1
    events = pd.DataFrame(
        {
            "unit_id": units[converted],
            "event_name": "converted",
            "value": np.nan,
            "occurred_at": ab_data.loc[converted, "timestamp"] + "+00",
        }
    )
    _copy(engine, settings.schema_name, "assignments", pd.concat([exposures, other]))
    _copy(engine, settings.schema_name, "events", events)
    e = parse_experiment(
        {
            "key": AB_KEY,
            "name": "Udacity landing page",
            "status": "running",
            "start_at": "2017-01-02T00:00:00Z",
            "variants": [
                {"key": "control", "weight": 0.5, "control": True},
                {"key": "treatment", "weight": 0.5},
            ],
            "metrics": [
                {"key": "conversion", "kind": "proportion", "event": "converted", "role": "primary"}
            ],
            # Fixed horizon: these tests pin the published one-look p-values (scipy parity).
            "analysis": {"test": "z_pooled", "sequential": False},
        }
    )
    return e, _analyse(engine, pg_url, settings, e, AB_AS_OF)


def test_ab_data_known_defects(ab_data: pd.DataFrame) -> None:
    """The published file's defects, counted from the CSV (the reference for what follows)."""
    assert len(ab_data) == 294_478
    mismatch = (ab_data["group"] == "treatment") != (ab_data["landing_page"] == "new_page")
    assert int(mismatch.sum()) == 3_893  # 1,928 control/new_page + 1,965 treatment/old_page
    assert ab_data["user_id"].nunique() == 290_584
    assert int(ab_data["user_id"].duplicated().sum()) == 3_894
    # every mismatched user has a second row; one user (773192) is repeated in treatment only
    matched_repeats = ab_data[~mismatch]["user_id"].value_counts()
    assert matched_repeats[matched_repeats > 1].index.tolist() == [773192]


def test_ab_data_mismatched_users_are_excluded_multiple_exposures(
    ab_data: pd.DataFrame, ab_run: tuple[Experiment, Analysed]
) -> None:
    """The 3,893 users shown both pages are multiple-exposure units: 1.34% > 1% warns, excluded."""
    _, run = ab_run
    multi = run.checks["multiple_exposure"]
    assert (multi.severity, multi.passed, multi.details["units"]) == ("warning", False, 3_893)
    assert multi.observed == pytest.approx(3_893 / 290_584, rel=1e-12)
    assert run.result.run.units == 286_691
    assert run.result.run.excluded_units == 3_893
    counts = {"control": 143_293, "treatment": 143_398}
    assert run.checks["srm"].details["counts"] == counts
    assert run.checks["srm"].observed == pytest.approx(
        chisquare(list(counts.values())).pvalue, rel=1e-9
    )
    assert run.checks["srm"].passed
    assert run.checks["gx_assignments_window_not_empty"].observed == 294_478 + 3_893
    assert run.failed() == {"multiple_exposure": "warning"}


def test_ab_data_conversion_matches_scipy_and_is_not_significant(
    ab_data: pd.DataFrame, ab_run: tuple[Experiment, Analysed]
) -> None:
    """Control 12.02% vs treatment 11.87% (p = 0.23): no effect, the known published result."""
    _, run = ab_run
    mismatch = (ab_data["group"] == "treatment") != (ab_data["landing_page"] == "new_page")
    excluded = set(ab_data.loc[mismatch, "user_id"])
    clean = ab_data[~ab_data["user_id"].isin(excluded)]
    per_user = clean.groupby("user_id").agg(group=("group", "first"), conv=("converted", "max"))
    ref = per_user.groupby("group")["conv"].agg(["sum", "count"])
    assert ref.loc["control"].tolist() == [17_220, 143_293]
    assert ref.loc["treatment"].tolist() == [17_025, 143_398]
    insight = run.overall("conversion")
    assert (insight.control_units, insight.variant_units) == (143_293, 143_398)
    assert insight.control_mean == pytest.approx(17_220 / 143_293, rel=1e-12)
    assert insight.variant_mean == pytest.approx(17_025 / 143_398, rel=1e-12)
    # the published figures (mismatched rows dropped, users kept): 12.04% vs 11.88%
    assert abs(insight.control_mean - 0.1204) < 5e-4
    assert abs(insight.variant_mean - 0.1188) < 5e-4
    p_ref = _two_proportion_p(17_220, 143_293, 17_025, 143_398)
    assert insight.method == "z_pooled"
    assert insight.p_value == pytest.approx(p_ref, rel=1e-9)
    assert 0.19 < insight.p_value < 0.25 and not insight.significant
    assert run.result.run.status == "succeeded"
    rec = run.result.recommendation
    assert rec is not None
    assert (rec.decision, rec.variant_key) == ("stop_inconclusive", None)
    assert rec.rationale.startswith("No treatment shows a significant improvement on conversion")
    assert rec.rationale.endswith("Stop the test and keep control.")


# --- cookie_cats: mobile game gate at level 30 vs 40 ----------------------------------------------

CC_KEY = "ds_cookie_cats"
CC_START = datetime(2026, 1, 5, tzinfo=UTC)
CC_AS_OF = CC_START + timedelta(days=14)


@pytest.fixture(scope="module")
def cookie_cats() -> pd.DataFrame:
    if not COOKIE_CATS.is_file():
        pytest.skip(f"{COOKIE_CATS} not present (the shared datasets sit beside the repository)")
    return pd.read_csv(COOKIE_CATS)


@pytest.fixture(scope="module")
def cc_run(
    cookie_cats: pd.DataFrame, engine: Engine, pg_url: str, settings: Settings
) -> tuple[Experiment, Analysed]:
    """Installs every 5 s in userid order (5.2 days); retention events 1 and 7 days later."""
    frame = cookie_cats.sort_values("userid", ignore_index=True)
    start = np.datetime64(CC_START.replace(tzinfo=None), "s")
    installed = start + np.arange(1, len(frame) + 1) * np.timedelta64(5, "s")

    def utc(times: np.ndarray) -> np.ndarray:
        return np.char.add(np.datetime_as_string(times, unit="s"), "+00")

    units = "ds_cc_" + frame["userid"].astype(str)
    exposures = pd.DataFrame(
        {
            "experiment_key": CC_KEY,
            "unit_id": units,
            "variant_key": frame["version"],
            "assigned_at": utc(installed),
        }
    )
    parts: list[pd.DataFrame] = []
    for column, days in (("retention_1", 1), ("retention_7", 7)):
        kept = frame[column].to_numpy()
        parts.append(
            pd.DataFrame(
                {
                    "unit_id": units[kept],
                    "event_name": column,
                    "value": np.nan,
                    "occurred_at": utc(installed[kept] + np.timedelta64(days, "D")),
                }
            )
        )
    _copy(engine, settings.schema_name, "assignments", exposures)
    _copy(engine, settings.schema_name, "events", pd.concat(parts))
    e = parse_experiment(
        {
            "key": CC_KEY,
            "name": "Cookie Cats gate",
            "status": "running",
            "start_at": CC_START.isoformat(),
            "variants": [
                {"key": "gate_30", "weight": 0.5, "control": True},
                {"key": "gate_40", "weight": 0.5},
            ],
            "metrics": [
                {
                    "key": "retention_1",
                    "kind": "proportion",
                    "event": "retention_1",
                    "role": "primary",
                },
                {
                    "key": "retention_7",
                    "kind": "proportion",
                    "event": "retention_7",
                    "role": "guardrail",
                },
            ],
            # Fixed horizon: these tests pin the published one-look p-values (scipy parity).
            "analysis": {"test": "z_pooled", "sequential": False},
        }
    )
    return e, _analyse(engine, pg_url, settings, e, CC_AS_OF)


def test_cookie_cats_srm_on_the_44700_vs_45489_split_warns(
    cc_run: tuple[Experiment, Analysed],
) -> None:
    """789 more players in gate_40: p = 0.0086, between the 0.001 fail and 0.01 warn tiers."""
    _, run = cc_run
    srm = run.checks["srm"]
    p_ref = chisquare([44_700, 45_489]).pvalue
    assert 0.001 < p_ref < 0.01
    assert srm.observed == pytest.approx(p_ref, rel=1e-9)
    assert (srm.severity, srm.passed, srm.threshold) == ("warning", False, 0.01)
    assert srm.details["counts"] == {"gate_30": 44_700, "gate_40": 45_489}
    # the published data stops at install + 7 days: exposures end 8.8 days before as_of
    traffic = run.checks["traffic"]
    assert (traffic.severity, traffic.passed) == ("warning", False)
    assert traffic.observed == pytest.approx((14 * 86_400 - 90_189 * 5) / 3600)
    assert run.failed() == {"srm": "warning", "traffic": "warning"}
    assert (run.result.run.units, run.result.run.excluded_units) == (90_189, 0)


def test_cookie_cats_retention_matches_scipy(
    cookie_cats: pd.DataFrame, cc_run: tuple[Experiment, Analysed]
) -> None:
    """1-day retention 44.82% vs 44.23% (not significant); 7-day 19.02% vs 18.20% is worse."""
    _, run = cc_run
    ref = cookie_cats.groupby("version").agg(
        n=("userid", "size"),
        r1=("retention_1", "sum"),
        r7=("retention_7", "sum"),
    )
    assert ref.loc["gate_30", ["n", "r1", "r7"]].tolist() == [44_700, 20_034, 8_502]
    assert ref.loc["gate_40", ["n", "r1", "r7"]].tolist() == [45_489, 20_119, 8_279]
    r1 = run.overall("retention_1")
    assert r1.control_mean == pytest.approx(20_034 / 44_700, rel=1e-12)
    assert r1.variant_mean == pytest.approx(20_119 / 45_489, rel=1e-12)
    assert round(r1.control_mean * 100, 2) == 44.82
    assert round(r1.variant_mean * 100, 2) == 44.23
    assert r1.p_value == pytest.approx(_two_proportion_p(20_034, 44_700, 20_119, 45_489), rel=1e-9)
    assert 0.05 < r1.p_value < 0.1 and not r1.significant
    r7 = run.overall("retention_7")
    assert (round(r7.control_mean * 100, 2), round(r7.variant_mean * 100, 2)) == (19.02, 18.2)
    assert r7.p_value == pytest.approx(_two_proportion_p(8_502, 44_700, 8_279, 45_489), rel=1e-9)
    assert r7.p_value < 0.01 and r7.significant and r7.rel_lift < 0
    # the published conclusion: moving the gate to level 40 hurts retention, keep it at 30
    assert run.result.run.status == "succeeded"
    rec = run.result.recommendation
    assert rec is not None
    assert (rec.decision, rec.variant_key) == ("rollback", "gate_30")
    assert rec.rationale.startswith(
        "Every treatment harms a guardrail against gate_30 (fixed-horizon evidence): gate_40: "
        "guardrail retention_7 significantly worse"
    )
