"""HTML report and Grafana dashboard SQL against a backfilled daily series on real PostgreSQL."""

from __future__ import annotations

import copy
import html
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from abflow.definitions import Experiment
from abflow.report import nice_ticks, pct, render_report
from abflow.settings import Settings
from tests.conftest import repo_root

# followup_timing is the cheapest demo experiment to backfill daily and it has segments.
# Asks --dist loadgroup to run the module on one worker so its fixtures are built once.
pytestmark = pytest.mark.xdist_group("report")

KEY = "followup_timing"
METRIC = "meeting_booked_rate"
FIRST_DAY = datetime(2026, 11, 3, tzinfo=UTC)
LAST_DAY = datetime(2026, 11, 21, tzinfo=UTC)
REPORT_PATH = Path("/tmp/abflow_report.html")
HOSTILE = "<script>alert('x')</script> & \"quoted\""


def backfill(engine: Engine, experiment: Experiment, days: list[datetime]) -> None:
    """Write one analysis run per as_of, as the backfill flow would (idempotent per as_of)."""
    from abflow.pipeline import assemble_result
    from abflow.warehouse import extract
    from abflow.warehouse.writer import write_result

    for as_of in days:
        with engine.begin() as conn:
            stats = extract.fetch_sufficient_stats(
                conn, experiment, as_of, assignments="assignments", events="events"
            )
            exposure = extract.fetch_exposure_summary(
                conn, experiment, as_of, assignments="assignments"
            )
            result = assemble_result(
                run_id=uuid.uuid4(), experiment=experiment, as_of=as_of, flow_run_id=None,
                started_at=as_of, finished_at=as_of, stats=stats, exposure=exposure,
                quality_checks=[],
            )
            write_result(conn, result)


@pytest.fixture(scope="module")
def report_data(engine: Engine, demo_loaded: dict[str, Any]) -> dict[str, Any]:
    """followup_timing backfilled daily (Nov 3..21) and read back the way the CLI does."""
    from abflow.warehouse.readback import insight_history, latest_results

    experiment: Experiment = demo_loaded["experiments"][KEY]
    days = [FIRST_DAY + timedelta(days=i) for i in range((LAST_DAY - FIRST_DAY).days + 1)]
    backfill(engine, experiment, days)
    with engine.connect() as conn:
        latest = latest_results(conn, [KEY])[0]
        history = insight_history(conn, KEY)
    return {"experiment": experiment, "latest": latest, "history": history}


@pytest.fixture(scope="module")
def report_html(report_data: dict[str, Any]) -> str:
    """The rendered report, also saved for a look in a browser."""
    out = render_report(report_data["experiment"], report_data["latest"], report_data["history"])
    REPORT_PATH.write_text(out, encoding="utf-8")
    return out


def test_backfill_gives_a_daily_series(report_data: dict[str, Any]) -> None:
    """The fixture really produced one overall row per day for the primary metric."""
    rows = [r for r in report_data["history"]
            if r["metric_key"] == METRIC and r["segment"] == "all"]
    days = {r["as_of"] for r in rows}
    # >= because other tests in the session may add runs of their own to the shared schema
    assert len(days) >= (LAST_DAY - FIRST_DAY).days + 1
    assert report_data["latest"]["run"]["as_of"] >= LAST_DAY


def test_report_has_charts(report_html: str, report_data: dict[str, Any]) -> None:
    """One lift-over-time chart per metric, one forest plot, dates on the x axis."""
    experiment: Experiment = report_data["experiment"]
    assert report_html.count('<svg class="lift"') == len(experiment.metrics)
    assert report_html.count('<svg class="forest"') == 1
    for m in experiment.metrics:
        assert f'aria-label="Relative lift over time for {m.key}"' in report_html
    assert "<polygon" in report_html  # the CI bands
    assert "Nov 03" in report_html and "Nov 21" in report_html


def test_report_shows_the_numbers(report_html: str, report_data: dict[str, Any]) -> None:
    """Header, recommendation, primary lift and the results/segment tables match the rows."""
    experiment: Experiment = report_data["experiment"]
    latest = report_data["latest"]
    primary = next(i for i in latest["insights"] if i["metric_role"] == "primary")
    lift = f"{primary['rel_lift'] * 100:+.1f}%"
    assert lift == pct(primary["rel_lift"])
    assert report_html.count(lift) >= 3  # KPI tile, forest plot label, results table
    assert f"{primary['chance_to_beat_control']:.1%}" in report_html
    rec = latest["recommendation"]
    assert f'data-decision="{rec["decision"]}"' in report_html
    assert html.escape(rec["rationale"]) in report_html
    assert html.escape(experiment.name) in report_html
    assert html.escape(experiment.hypothesis) in report_html
    for variant, units in latest["units"].items():
        assert f"{variant}" in report_html and f"{units:,}" in report_html
    assert "Segment breakdown" in report_html
    assert "segment=enterprise" in report_html


def test_report_health_panel(report_html: str, report_data: dict[str, Any]) -> None:
    """Every check of the latest run is listed with its observed value and threshold."""
    assert "Health checks" in report_html
    for check in report_data["latest"]["checks"]:
        assert html.escape(check["check_name"]) in report_html
    assert "srm" in report_html and "passed" in report_html


def test_report_is_self_contained(report_html: str) -> None:
    """No scripts, stylesheets, fonts or images from the network."""
    lowered = report_html.lower()
    assert "<script" not in lowered
    assert "<link" not in lowered
    assert "http://" not in lowered and "https://" not in lowered
    assert "<style>" in lowered


def test_report_escapes_user_text(report_data: dict[str, Any]) -> None:
    """Names, rationales and check details are escaped, never injected."""
    experiment = report_data["experiment"].model_copy(
        update={"name": HOSTILE, "hypothesis": HOSTILE}
    )
    latest = copy.deepcopy(report_data["latest"])
    latest["recommendation"]["rationale"] = HOSTILE
    latest["checks"][0]["details"] = {"sample": [HOSTILE]}
    latest["checks"][0]["passed"] = False
    out = render_report(experiment, latest, report_data["history"])
    assert "<script" not in out
    assert html.escape(HOSTILE) in out


def test_report_handles_missing_data(report_data: dict[str, Any]) -> None:
    """Empty history, a single run, error rows and no recommendation still render."""
    experiment = report_data["experiment"]
    latest, history = report_data["latest"], report_data["history"]
    assert "No history" in render_report(experiment, latest, [])
    single = [r for r in history if r["as_of"] == latest["run"]["as_of"]]
    assert render_report(experiment, latest, single).count('<svg class="lift"') == len(
        experiment.metrics
    )
    broken = copy.deepcopy(latest)
    broken["recommendation"] = None
    broken["insights"][0]["error"] = "zero variance in control"
    out = render_report(experiment, broken, history)
    assert "No recommendation" in out and "not computed: zero variance in control" in out
    bare = render_report(experiment, {"run": None, "insights": [], "checks": [], "units": {}}, [])
    assert "No metric results" in bare and "No health checks" in bare


def test_direction_aware_colours(engine: Engine, demo_loaded: dict[str, Any]) -> None:
    """A significant drop in a lower-is-better metric is good (green), a rise is bad (red)."""
    from abflow.warehouse.readback import insight_history, latest_results

    experiment: Experiment = demo_loaded["experiments"]["enrichment_strategy"]
    backfill(engine, experiment, [LAST_DAY])  # one run only: charts show single points
    with engine.connect() as conn:
        latest = latest_results(conn, [experiment.key])[0]
        history = insight_history(conn, experiment.key)
    out = render_report(experiment, latest, history)
    cost = next(i for i in latest["insights"] if i["metric_key"] == "cost_per_enrichment"
                and i["significant"] and i["rel_lift"] < 0)
    edits = next(i for i in latest["insights"] if i["metric_key"] == "user_edit_rate"
                 and i["significant"] and i["rel_lift"] > 0)
    assert f'<td class="good">{pct(cost["rel_lift"])}' in out
    assert f'<td class="bad">{pct(edits["rel_lift"])}' in out
    assert out.count('<svg class="lift"') == len(experiment.metrics)


def test_formatting_helpers() -> None:
    """Percentages keep tiny effects visible; ticks cover the range in round steps."""
    assert pct(0.18433) == "+18.4%"
    assert pct(-0.0004) == "-0.040%"
    assert pct(None) == "—"
    ticks = nice_ticks(-7.3, 31.0, 5)
    assert ticks == [-10.0, 0.0, 10.0, 20.0, 30.0]


# Grafana dashboard --------------------------------------------------------------------------

def _dashboard() -> dict[str, Any]:
    """The shipped Grafana dashboard JSON."""
    return json.loads((repo_root() / "dashboards" / "abflow_grafana.json").read_text())


def _dashboard_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, sql) for every panel target and query variable."""
    out = [(p["title"], t["rawSql"]) for p in dashboard["panels"] for t in p.get("targets", [])]
    out += [(f"variable {v['name']}", v["query"]) for v in dashboard["templating"]["list"]
            if v["type"] == "query"]
    return out


def _bind(sql: str, schema: str) -> str:
    """Substitute the Grafana macros and variables the way Grafana would for our demo data."""
    sql = re.sub(r"\$__timeFilter\([^)]*\)", "true", sql)
    # ${var:sqlstring}: Grafana quotes the value and doubles its quotes (test_dashboard.py)
    sql = sql.replace("${experiment:sqlstring}", f"'{KEY}'")
    sql = sql.replace("${metric:sqlstring}", f"'{METRIC}'")
    return re.sub(r"\babflow\.", f'"{schema}".', sql)


def test_dashboard_shape() -> None:
    """PostgreSQL data source by variable, the two template variables, the five panel kinds."""
    dash = _dashboard()
    assert 36 <= dash["schemaVersion"] <= 41
    assert {v["name"] for v in dash["templating"]["list"]} >= {"experiment", "metric"}
    assert dash["__inputs"][0]["name"] == "DS_ABFLOW"
    for panel in dash["panels"]:
        assert panel["datasource"]["uid"] == "${DS_ABFLOW}"
    titles = " | ".join(p["title"] for p in dash["panels"]).lower()
    for words in ("comparison", "lift over time", "units per variant", "health", "recommendation"):
        assert words in titles


def test_dashboard_sql_runs_against_schema(
    report_data: dict[str, Any], engine: Engine, settings: Settings
) -> None:
    """Every rawSql and variable query executes on our schema and returns rows."""
    queries = _dashboard_queries(_dashboard())
    assert len(queries) >= 7
    with engine.connect() as conn:
        for where, sql in queries:
            bound = _bind(sql, settings.schema_name)
            assert "$" not in bound, f"{where}: unsubstituted variable"
            rows = conn.execute(text(bound)).fetchall()
            assert rows, f"{where}: no rows"


def test_capped_and_filtered_metrics_in_report_and_panel(
    engine: Engine, demo_loaded: dict[str, Any]
) -> None:
    """checkout_button: capped revenue beside its uncapped result, caps used, the filter."""
    from rich.console import Console

    from abflow.console import experiment_panel
    from abflow.warehouse.readback import insight_history, latest_results

    experiment: Experiment = demo_loaded["experiments"]["checkout_button"]
    backfill(engine, experiment, [LAST_DAY])
    with engine.connect() as conn:
        latest = latest_results(conn, ["checkout_button"])[0]
        history = insight_history(conn, "checkout_button")
        cap = conn.exec_driver_sql(
            "select distinct cap_upper, uncapped_mean is not null from variant_stats"
            " where run_id = %(r)s and metric_key = 'revenue' and segment = 'all'",
            {"r": latest["run"]["run_id"]},
        ).all()
    assert len(cap) == 1 and cap[0][0] > 0 and cap[0][1]  # one pooled cap for both arms
    revenue = next(i for i in latest["insights"] if i["metric_key"] == "revenue")
    assert revenue["uncapped_rel_lift"] is not None
    assert revenue["uncapped_control_mean"] > revenue["control_mean"]  # the whales, capped
    out = render_report(experiment, latest, history)
    assert "Capping and filters" in out
    assert f"≤ {cap[0][0]:.4g}" in out and pct(revenue["uncapped_rel_lift"]) in out
    assert "platform in [ios, android] and amount &gt;= 10" in out
    console = Console(record=True, width=200)
    console.print(experiment_panel(latest))
    text = console.export_text()
    assert "revenue (green) winsorized at p99 of all units" in text
    assert "uncapped" in text and "app_revenue: only events where platform in" in text


def test_quantiles_and_exposure_age_in_the_report_and_tables(
    engine: Engine, demo_loaded: dict[str, Any]
) -> None:
    """checkout_button: the p90 guardrail, lift by days since exposure and novelty_effect.

    The demo's return sessions are boosted for green in the first week only: the warning fires
    and the chart shows the fading lift. Written twice for one as_of: rows are replaced.
    """
    from abflow.warehouse.readback import insight_history, latest_results

    experiment: Experiment = demo_loaded["experiments"]["checkout_button"]
    as_of = datetime(2026, 11, 21, tzinfo=UTC)
    backfill(engine, experiment, [as_of, as_of])
    with engine.connect() as conn:
        latest = latest_results(conn, ["checkout_button"])[0]
        history = insight_history(conn, "checkout_button")
        counts = conn.execute(
            text(
                "select count(*), count(distinct (metric_key, variant_key, cohort))"
                " from lift_by_exposure_age where run_id = :r"
            ),
            {"r": latest["run"]["run_id"]},
        ).one()
        quantile = conn.execute(
            text(
                "select mean, quantile_lower, quantile_upper, quantile_n from variant_stats"
                " where run_id = :r and metric_key = 'latency_p90_ms' and segment = 'all'"
            ),
            {"r": latest["run"]["run_id"]},
        ).all()
    # 6 non-quantile metrics (app_revenue came with the metric options) x 1 treatment x 3
    # cohorts (20 days: no unit is 21 days old yet), once: the rerun replaced the rows
    assert tuple(counts) == (18, 18)
    assert len(quantile) == 2
    for mean, lower, upper, n in quantile:
        assert lower < mean < upper and n > 6000
    p90 = next(i for i in latest["insights"] if i["metric_key"] == "latency_p90_ms")
    assert p90["method"].endswith("(quantile_order_stats)") and p90["error"] is None
    novelty = next(c for c in latest["checks"] if c["check_name"] == "novelty_effect")
    assert not novelty["passed"] and "sessions" in novelty["details"]["note"]
    out = render_report(experiment, latest, history)
    assert "Lift by days since first exposure" in out
    assert out.count('<svg class="cohorts"') == 6  # one chart per non-quantile metric
    assert "days 7-13" in out and "days 21+" in out
    assert "novelty_effect" in out and "a novelty effect" in out
    assert "p90 over per-unit mean" in out
