"""Every data defect of SPEC §5 on the real embedded PostgreSQL, end to end.

Each test plants one defect with plain SQL (generate_series: exact and deterministic) under its
own experiment key and unit-id prefix, then runs what the flow runs for one experiment: the one
pass extraction, the GX suites inside PostgreSQL, assembly, the transactional write and the
auto-promotion step. It asserts the exact counts abflow reports, the run status, the
recommendation, the `health_checks` rows as written and whether anything was promoted.

The clean baseline (2,000 units, control 10% vs treatment 20% conversion) ships and is
auto-promoted, so "nothing was promoted" under a critical defect is a real block. Warnings are
reported and do not block: those tests assert the promotion did happen.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from scipy.stats import chisquare
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from abflow.definitions import Experiment, parse_experiment
from abflow.pipeline import assemble_result
from abflow.results import CheckOutcome, ExperimentResult
from abflow.settings import Settings
from abflow.warehouse import extract, readback, writer
from abflow.warehouse.experiments_repo import upsert_experiments
from abflow.warehouse.promotion import PromotionRefused, apply_run_outcome, promote
from abflow.warehouse.validate import validate_postgres

AS_OF = datetime(2026, 11, 21, tzinfo=UTC)
START = "2026-11-01T00:00:00Z"
# Exposure g of n happens at FIRST_EXPOSURE + g * (26,000 / n) minutes: the last one lands on
# 2026-11-20 01:20, under 48 h before AS_OF, so traffic is healthy unless a test stops it.
FIRST_EXPOSURE = "2026-11-02"
SPAN_MINUTES = 26_000
# Units with even g are control and convert when g % 20 = 0 (10%); odd g are treatment and
# convert when g % 10 = 1 (20%): the treatment clearly wins (p < 1e-9 at 1,000 per arm).
CONTROL_BUYS = "g % 20 = 0"
TREATMENT_BUYS = "g % 10 = 1"


# --- helpers ------------------------------------------------------------------------------------


def _experiment(key: str, **overrides: Any) -> Experiment:
    """Two arms 50/50, conversion on 'buy' as the primary metric, auto-promotion on."""
    data: dict[str, Any] = {
        "key": key,
        "name": f"defect {key}",
        "status": "running",
        "start_at": START,
        "variants": [
            {"key": "control", "weight": 0.5, "control": True},
            {"key": "treatment", "weight": 0.5, "config": {"on": True}},
        ],
        # Planned for a 50% relative MDE: the always-valid rule's mixture is then tuned to the
        # few thousand units these data-quality fixtures hold, so the planted win is decidable.
        "metrics": [
            {"key": "conv", "kind": "proportion", "event": "buy", "role": "primary", "mde": 0.5}
        ],
        "decision": {"auto_promote": True, "min_runtime_days": 3},
        # The planted win doubles conversion (+100%): plausible here by construction.
        "analysis": {"max_plausible_lift": 2.0},
    }
    data.update(overrides)
    return parse_experiment(data)


def _define(engine: Engine, e: Experiment) -> None:
    with engine.begin() as conn:
        upsert_experiments(conn, [e])


def _exposure_at(n: int) -> str:
    return f"timestamptz '{FIRST_EXPOSURE}' + g * interval '{SPAN_MINUTES // n} minutes'"


def _seed(
    engine: Engine,
    key: str,
    prefix: str,
    n: int = 2000,
    *,
    assignments: str = "assignments",
    events: str = "events",
    treatment_buys: str = TREATMENT_BUYS,
    attributes: str = "null",
    value: str = "10 + g % 7",
    keep: str = "true",
    at: str | None = None,
) -> None:
    """n units alternating control (even g) / treatment (odd g), with 'buy' 1 h after exposure.

    `keep` (SQL on g) leaves units out; `at` overrides the exposure time expression.
    """
    at = at or _exposure_at(n)
    with engine.begin() as conn:
        conn.execute(
            text(
                f"insert into {assignments} (experiment_key, unit_id, variant_key, assigned_at,"  # noqa: S608
                f" attributes) select :k, :p || g, case when g % 2 = 0 then 'control'"
                f" else 'treatment' end, {at}, {attributes} from generate_series(1, :n) g"
                f" where {keep}"
            ),
            {"k": key, "p": prefix, "n": n},
        )
        conn.execute(
            text(
                f"insert into {events} (unit_id, event_name, value, occurred_at)"  # noqa: S608
                f" select :p || g, 'buy', {value}, {at} + interval '1 hour'"
                f" from generate_series(1, :n) g"
                f" where ({keep}) and ((g % 2 = 0 and {CONTROL_BUYS})"
                f" or (g % 2 = 1 and {treatment_buys}))"
            ),
            {"p": prefix, "n": n},
        )


def _sql(engine: Engine, statement: str, **params: Any) -> None:
    with engine.begin() as conn:
        conn.execute(text(statement), params)


@dataclass(frozen=True)
class Run:
    """One analysed and written run: the result, its rows as stored, and the promotion outcome."""

    result: ExperimentResult
    checks: dict[str, dict[str, Any]]
    promotion: str | None

    @property
    def status(self) -> str:
        return self.result.run.status

    @property
    def decision(self) -> str:
        assert self.result.recommendation is not None
        return self.result.recommendation.decision

    @property
    def rationale(self) -> str:
        assert self.result.recommendation is not None
        return self.result.recommendation.rationale

    def failed(self) -> dict[str, str]:
        """Failed checks by name -> severity."""
        return {n: c["severity"] for n, c in self.checks.items() if not c["passed"]}

    def units(self, metric: str = "conv") -> dict[str, int]:
        return {
            r.variant_key: r.units
            for r in self.result.variant_stats
            if r.metric_key == metric and r.segment == "all"
        }

    def sums(self, metric: str = "conv") -> dict[str, float]:
        return {
            r.variant_key: r.sum
            for r in self.result.variant_stats
            if r.metric_key == metric and r.segment == "all"
        }


def _assemble(
    engine: Engine,
    e: Experiment,
    quality: list[CheckOutcome],
    *,
    as_of: datetime = AS_OF,
    assignments: str = "assignments",
    events: str = "events",
) -> ExperimentResult:
    """Extraction in one transaction (as the flow's task does), then assembly."""
    with engine.begin() as conn:
        stats = extract.fetch_sufficient_stats(
            conn, e, as_of, assignments=assignments, events=events
        )
        exposure = extract.fetch_exposure_summary(conn, e, as_of, assignments=assignments)
    return assemble_result(
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


def _analyze(
    engine: Engine,
    pg_url: str,
    settings: Settings,
    e: Experiment,
    *,
    as_of: datetime = AS_OF,
    assignments: str = "assignments",
    events: str = "events",
) -> Run:
    """What abflow.flows.analyze does for one experiment, without Prefect: extract, the suites
    (as SQL with samples of what failed, the default on PostgreSQL), assemble, write."""
    with engine.connect() as conn:
        before = readback.previous_units(conn, e.key, as_of)
    with engine.connect() as conn, conn.begin():
        quality = validate_postgres(
            conn,
            settings.schema_name,
            e,
            as_of,
            assignments_source=assignments,
            events_source=events,
            previous_units=before,
        )
    result = _assemble(engine, e, quality, as_of=as_of, assignments=assignments, events=events)
    promotion = _write_and_promote(engine, result, e)
    with engine.connect() as conn:
        rows = conn.execute(
            text("select * from health_checks where run_id = :r"), {"r": result.run.run_id}
        ).mappings()
        checks = {r["check_name"]: dict(r) for r in rows}
    assert set(checks) == {c.check_name for c in result.health_checks}
    return Run(result, checks, promotion)


def _write_and_promote(engine: Engine, result: ExperimentResult, e: Experiment) -> str | None:
    """abflow.tasks.warehouse.write_results without Prefect: one transaction, promote a ship."""
    with engine.begin() as conn:
        writer.lock_experiment(conn, result.run.experiment_key, 10)
        writer.write_result(conn, result)
        return apply_run_outcome(conn, e, result)


def _promotion_state(engine: Engine, key: str) -> tuple[str | None, int, list[tuple[Any, ...]]]:
    """(promoted variant, config version, promotion audit rows) of one experiment."""
    with engine.connect() as conn:
        variant, version = conn.execute(
            text(
                "select promoted_variant_key, version from experiment_config"
                " where experiment_key = :k"
            ),
            {"k": key},
        ).one()
        audit = conn.execute(
            text(
                "select action, variant_key, actor from promotions where experiment_key = :k"
                " order by id"
            ),
            {"k": key},
        ).all()
    return variant, version, [tuple(a) for a in audit]


def _assert_blocked(engine: Engine, run: Run, key: str, critical: list[str]) -> None:
    """Unhealthy, investigate with the reasons, statistics still written, nothing promoted."""
    assert run.status == "unhealthy"
    assert run.result.run.message == "critical checks failed: " + ", ".join(critical)
    assert run.decision == "investigate"
    assert run.result.recommendation is not None
    assert run.result.recommendation.variant_key is None
    assert run.result.recommendation.details["failed_checks"] == critical
    assert run.rationale.startswith("Health checks failed, so no decision is safe: ")
    assert run.rationale.endswith(". Fix the data before acting.")
    assert run.promotion is None
    assert _promotion_state(engine, key) == (None, 1, [])
    with engine.connect() as conn:
        stored = conn.execute(
            text(
                "select decision, run_status, rationale from latest_recommendations"
                " where experiment_key = :k"
            ),
            {"k": key},
        ).one()
        stat_rows = conn.execute(
            text("select count(*) from variant_stats where run_id = :r"),
            {"r": run.result.run.run_id},
        ).scalar()
    assert tuple(stored) == ("investigate", "unhealthy", run.rationale)
    assert stat_rows == len(run.result.variant_stats)
    # A manual promotion is refused too while the latest run is unhealthy.
    with pytest.raises(PromotionRefused, match="latest run is unhealthy"), engine.begin() as conn:
        promote(conn, key, "treatment", actor="tester", reason="override attempt")


def _assert_promoted(engine: Engine, run: Run, key: str) -> None:
    """Succeeded, ship treatment, auto-promoted exactly once (warnings do not block)."""
    assert run.status == "succeeded"
    assert run.decision == "ship"
    assert run.result.recommendation is not None
    assert run.result.recommendation.variant_key == "treatment"
    assert run.rationale.startswith("treatment beats control on conv")
    assert run.promotion == "promoted 'treatment' (config v2)"
    assert _promotion_state(engine, key) == ("treatment", 2, [("promote", "treatment", "auto")])


# --- the clean baseline -------------------------------------------------------------------------


def test_clean_baseline_ships_and_is_auto_promoted(
    engine: Engine, pg_url: str, settings: Settings
) -> None:
    """Without defects the planted data is a clear win: every check passes and it is promoted."""
    e = _experiment("dq_clean")
    _define(engine, e)
    _seed(engine, e.key, "dqc")
    run = _analyze(engine, pg_url, settings, e)
    assert run.failed() == {}
    assert run.units() == {"control": 1000, "treatment": 1000}
    assert run.sums() == {"control": 100.0, "treatment": 200.0}
    assert (run.result.run.units, run.result.run.excluded_units) == (2000, 0)
    assert run.checks["gx_assignments_window_not_empty"]["observed"] == 2000
    assert run.checks["srm"]["observed"] == 1.0
    _assert_promoted(engine, run, e.key)


# --- warnings: reported, never blocking ----------------------------------------------------------


def test_multiple_exposure_warns_above_one_percent_and_is_excluded(
    engine: Engine, pg_url: str, settings: Settings
) -> None:
    """40 of 2,000 units also exposed to the other arm: 2% > 1%, a warning; all 40 excluded."""
    e = _experiment("dq_multi")
    _define(engine, e)
    _seed(engine, e.key, "dqm")
    _sql(
        engine,
        "insert into assignments (experiment_key, unit_id, variant_key, assigned_at)"
        " select 'dq_multi', 'dqm' || g, case when g % 2 = 0 then 'treatment' else 'control' end,"
        " timestamptz '2026-11-20' + g * interval '1 minute' from generate_series(1, 40) g",
    )
    run = _analyze(engine, pg_url, settings, e)
    multi = run.checks["multiple_exposure"]
    assert (multi["severity"], multi["passed"]) == ("warning", False)
    assert (multi["observed"], multi["threshold"]) == (0.02, 0.01)
    assert multi["details"]["units"] == 40
    assert multi["details"]["sample"] == ["dqm1", "dqm10", "dqm11", "dqm12", "dqm13"]
    assert run.failed() == {"multiple_exposure": "warning"}
    # excluded from every statistic: 20 per arm gone
    assert run.units() == {"control": 980, "treatment": 980}
    assert run.sums() == {"control": 98.0, "treatment": 196.0}
    assert (run.result.run.units, run.result.run.excluded_units) == (1960, 40)
    _assert_promoted(engine, run, e.key)


def test_multiple_exposure_at_half_a_percent_passes(
    engine: Engine, pg_url: str, settings: Settings
) -> None:
    """10 of 2,000 (0.5%) is under the 1% warning level, yet still excluded."""
    e = _experiment("dq_multi_low", decision={"auto_promote": False})
    _define(engine, e)
    _seed(engine, e.key, "dqml")
    _sql(
        engine,
        "insert into assignments (experiment_key, unit_id, variant_key, assigned_at)"
        " select 'dq_multi_low', 'dqml' || g, 'treatment', timestamptz '2026-11-20'"
        " from generate_series(2, 20, 2) g",
    )
    run = _analyze(engine, pg_url, settings, e)
    multi = run.checks["multiple_exposure"]
    assert (multi["passed"], multi["observed"], multi["details"]["units"]) == (True, 0.005, 10)
    assert run.failed() == {}
    assert run.units() == {"control": 990, "treatment": 1000}
    assert run.result.run.excluded_units == 10
    assert (run.status, run.decision, run.promotion) == ("succeeded", "ship", None)


def test_pre_exposure_contamination_is_counted_and_never_analysed(
    engine: Engine, pg_url: str, settings: Settings
) -> None:
    """600 of 2,000 units bought after the start but before exposure: 30% > 25% warns."""
    e = _experiment("dq_contam")
    _define(engine, e)
    _seed(engine, e.key, "dqx")
    # g % 10 in (0, 4) are control (400 units), g % 10 = 3 treatment (200 units)
    _sql(
        engine,
        "insert into events (unit_id, event_name, value, occurred_at)"  # noqa: S608
        f" select 'dqx' || g, 'buy', null, {_exposure_at(2000)} - interval '2 hours'"
        " from generate_series(1, 2000) g where g % 10 in (0, 3, 4)",
    )
    run = _analyze(engine, pg_url, settings, e)
    dirty = run.checks["contamination"]
    assert (dirty["severity"], dirty["passed"]) == ("warning", False)
    assert (dirty["observed"], dirty["threshold"]) == (0.3, 0.25)
    assert dirty["details"]["units"] == 600
    assert dirty["details"]["by_variant"] == {"control": 400, "treatment": 200}
    assert run.failed() == {"contamination": "warning"}
    # the pre-exposure purchases are not counted: conversions are exactly the baseline's
    assert run.sums() == {"control": 100.0, "treatment": 200.0}
    _assert_promoted(engine, run, e.key)


def test_future_timestamps_warn_and_are_left_out(
    engine: Engine, pg_url: str, settings: Settings
) -> None:
    """25 exposures and 15 purchases stamped in 2030 are counted by GX and never analysed."""
    e = _experiment("dq_future")
    _define(engine, e)
    _seed(engine, e.key, "dqf")
    _sql(
        engine,
        "insert into assignments (experiment_key, unit_id, variant_key, assigned_at)"
        " select 'dq_future', 'dqf_late' || g, 'treatment', timestamptz '2030-01-01' + g * interval"
        " '1 hour' from generate_series(1, 25) g",
    )
    # 15 control units that never converted 'buy' in 2030
    _sql(
        engine,
        "insert into events (unit_id, event_name, value, occurred_at)"
        " select 'dqf' || (g * 2), 'buy', null, timestamptz '2030-06-01'"
        " from generate_series(1, 15) g",
    )
    run = _analyze(engine, pg_url, settings, e)
    assert run.failed() == {
        "gx_assignments_assigned_at_in_window": "warning",
        "gx_assignments_assigned_at_not_in_future": "warning",
        "gx_events_occurred_at_not_in_future": "warning",
    }
    for name, count in (
        ("gx_assignments_assigned_at_not_in_future", 25),
        ("gx_assignments_assigned_at_in_window", 25),
        ("gx_events_occurred_at_not_in_future", 15),
    ):
        check = run.checks[name]
        assert (check["observed"], check["threshold"]) == (count, 0.0)
        assert check["details"]["unexpected_count"] == count
    future = run.checks["gx_events_occurred_at_not_in_future"]["details"]["sample"]
    assert future == ["2030-06-01T00:00:00+00:00"]
    assert run.checks["gx_assignments_window_not_empty"]["observed"] == 2025
    # analysis ignores both: 2,000 units and the baseline conversions
    assert run.units() == {"control": 1000, "treatment": 1000}
    assert run.sums() == {"control": 100.0, "treatment": 200.0}
    assert (run.result.run.units, run.result.run.excluded_units) == (2000, 0)
    _assert_promoted(engine, run, e.key)


def test_duplicated_event_rows_warn(engine: Engine, pg_url: str, settings: Settings) -> None:
    """50 purchases loaded twice: the surplus rows are counted with a sample of their keys."""
    e = _experiment(
        "dq_dupes",
        metrics=[
            {"key": "conv", "kind": "proportion", "event": "buy", "role": "primary"},
            {"key": "revenue", "kind": "mean", "event": "buy", "value": "sum"},
        ],
    )
    _define(engine, e)
    _seed(engine, e.key, "dqd", value="10")
    # the first 50 control purchases (g = 20, 40, ..., 1000) arrive a second time
    _sql(
        engine,
        "insert into events (unit_id, event_name, value, occurred_at)"
        " select unit_id, event_name, value, occurred_at from events"
        " where unit_id in (select 'dqd' || g from generate_series(20, 1000, 20) g)",
    )
    run = _analyze(engine, pg_url, settings, e)
    dupes = run.checks["gx_events_no_duplicate_rows"]
    assert (dupes["severity"], dupes["passed"], dupes["observed"]) == ("warning", False, 50)
    assert dupes["details"]["unexpected_count"] == 50
    assert dupes["details"]["element_count"] == 350
    sample = dupes["details"]["sample"]
    assert len(sample) == 5
    assert all(s.startswith("dqd") and s.split(" | ")[1:2] == ["buy"] for s in sample)
    assert run.failed() == {"gx_events_no_duplicate_rows": "warning"}
    # counted and reported by GX, excluded from the analysis: sums are those without repeats
    assert run.sums() == {"control": 100.0, "treatment": 200.0}
    assert run.sums("revenue") == {"control": 1000.0, "treatment": 2000.0}
    _assert_promoted(engine, run, e.key)


def test_srm_between_the_tiers_warns(engine: Engine, pg_url: str, settings: Settings) -> None:
    """1,000 vs 880 on a 50/50 split: 0.001 <= p < 0.01 is a warning and does not block."""
    e = _experiment("dq_srm_warn")
    _define(engine, e)
    # 120 treatment units lose their exposure by being stamped before the start
    early = "case when g < 240 and g % 2 = 1 then timestamptz '2026-10-15' else {} end"
    _seed(engine, e.key, "dqsw", at=early.format(_exposure_at(2000)))
    run = _analyze(engine, pg_url, settings, e)
    expected_p = chisquare([1000, 880]).pvalue
    srm = run.checks["srm"]
    assert 0.001 < expected_p < 0.01
    assert srm["observed"] == pytest.approx(expected_p, rel=1e-9)
    assert (srm["severity"], srm["passed"], srm["threshold"]) == ("warning", False, 0.01)
    assert srm["details"]["counts"] == {"control": 1000, "treatment": 880}
    assert srm["details"]["expected"] == {"control": 940.0, "treatment": 940.0}
    assert run.failed() == {"srm": "warning", "gx_assignments_assigned_at_in_window": "warning"}
    assert run.checks["gx_assignments_assigned_at_in_window"]["observed"] == 120
    _assert_promoted(engine, run, e.key)


def test_min_sample_not_reached_keeps_running(
    engine: Engine, pg_url: str, settings: Settings
) -> None:
    """100 units per arm against the 150 minimum: a warning, and the winner is not shipped yet."""
    e = _experiment("dq_minsample", analysis={"max_plausible_lift": 10.0})  # 10% vs 60%
    _define(engine, e)
    _seed(engine, e.key, "dqn", n=200, treatment_buys="g % 10 in (1, 3, 5)")
    run = _analyze(engine, pg_url, settings, e)
    check = run.checks["min_sample"]
    assert (check["severity"], check["passed"]) == ("warning", False)
    assert (check["observed"], check["threshold"]) == (100.0, 150.0)
    assert check["details"]["units_by_variant"] == {"control": 100, "treatment": 100}
    assert run.failed() == {"min_sample": "warning"}
    assert run.sums() == {"control": 10.0, "treatment": 60.0}
    assert run.status == "succeeded"
    assert run.decision == "keep_running"
    assert run.result.recommendation is not None
    assert run.result.recommendation.variant_key == "treatment"
    assert "the smallest arm has 100 units of the 150 required. Keep running." in run.rationale
    assert run.promotion is None
    assert _promotion_state(engine, e.key) == (None, 1, [])


def test_traffic_stopping_warns(engine: Engine, pg_url: str, settings: Settings) -> None:
    """The last exposure 120 h before as_of (> 48 h): a warning with the hours since."""
    e = _experiment("dq_traffic")
    _define(engine, e)
    # traffic stops: nobody exposed after 2026-11-16, the exposures since are pulled back there
    stopped = f"least({_exposure_at(2000)}, timestamptz '2026-11-16')"
    _seed(engine, e.key, "dqt", at=stopped)
    run = _analyze(engine, pg_url, settings, e)
    traffic = run.checks["traffic"]
    assert (traffic["severity"], traffic["passed"]) == ("warning", False)
    assert (traffic["observed"], traffic["threshold"]) == (120.0, 48.0)
    assert traffic["details"]["last_exposed_at"] == "2026-11-16T00:00:00+00:00"
    assert run.failed() == {"traffic": "warning"}
    _assert_promoted(engine, run, e.key)


def test_sudden_drop_against_the_previous_run_warns(
    engine: Engine, pg_url: str, settings: Settings
) -> None:
    """A run sees 800 units where the previous one saw 2,000 (< half): a warning."""
    e = _experiment("dq_drop")
    _define(engine, e)
    # Own copies of the raw tables, so rows can be lost without touching the shared ones.
    for table in ("assignments", "events"):
        _sql(engine, f"create table dq_drop_{table} (like {table} including all)")
    _seed(engine, e.key, "dqp", assignments="dq_drop_assignments", events="dq_drop_events")
    sources = {"assignments": "dq_drop_assignments", "events": "dq_drop_events"}
    first = _analyze(engine, pg_url, settings, e, as_of=AS_OF - timedelta(hours=12), **sources)
    assert first.failed() == {}
    assert first.result.run.units == 2000
    _assert_promoted(engine, first, e.key)
    # the source loses every exposure after unit 800
    _sql(engine, "delete from dq_drop_assignments where substr(unit_id, 4)::int > 800")
    run = _analyze(engine, pg_url, settings, e, **sources)
    drop = run.checks["gx_variant_stats_units_not_dropped"]
    assert (drop["severity"], drop["passed"]) == ("warning", False)
    assert (drop["observed"], drop["threshold"]) == (800.0, 1000.0)
    assert run.result.run.units == 800
    assert run.units() == {"control": 400, "treatment": 400}
    # the lost exposures also stopped the traffic: the last kept one is 2026-11-09 05:20
    assert run.checks["traffic"]["observed"] == pytest.approx(11 * 24 + 18 + 40 / 60)
    assert run.failed() == {"gx_variant_stats_units_not_dropped": "warning", "traffic": "warning"}
    assert (run.status, run.decision) == ("succeeded", "ship")
    # already promoted by the first run: a no-op, no second audit row
    assert run.promotion == "'treatment' is already promoted"
    assert _promotion_state(engine, e.key) == ("treatment", 2, [("promote", "treatment", "auto")])


# --- critical failures: unhealthy, investigate, never promoted -----------------------------------


def test_srm_below_one_in_a_thousand_blocks(
    engine: Engine, pg_url: str, settings: Settings
) -> None:
    """1,000 vs 850 on a 50/50 split: p < 0.001 fails critically."""
    e = _experiment("dq_srm")
    _define(engine, e)
    _seed(engine, e.key, "dqs", keep="g >= 300 or g % 2 = 0")  # 150 treatment units lost
    run = _analyze(engine, pg_url, settings, e)
    expected_p = chisquare([1000, 850]).pvalue
    srm = run.checks["srm"]
    assert expected_p < 0.001
    assert srm["observed"] == pytest.approx(expected_p, rel=1e-9)
    assert (srm["severity"], srm["passed"], srm["threshold"]) == ("critical", False, 0.001)
    assert srm["details"]["counts"] == {"control": 1000, "treatment": 850}
    assert run.failed() == {"srm": "critical"}
    _assert_blocked(engine, run, e.key, ["srm"])
    assert f"sample ratio mismatch (srm, p={expected_p:.2g} < 0.001)" in run.rationale
    # the statistics are still written: the treatment would have won
    primary = next(i for i in run.result.insights if i.segment == "all")
    assert primary.significant and primary.rel_lift > 0


def test_srm_inside_one_segment_blocks(engine: Engine, pg_url: str, settings: Settings) -> None:
    """Balanced overall (1,000/1,000) but 600/400 on iOS and 400/600 on Android."""
    e = _experiment(
        "dq_srm_segment", analysis={"segments": ["platform"], "max_plausible_lift": 2.0}
    )
    _define(engine, e)
    # control g % 10 in (0, 2, 4) and treatment g % 10 in (1, 3) are iOS
    platform = (
        "jsonb_build_object('platform', case when g % 10 in (0, 2, 4, 1, 3)"
        " then 'ios' else 'android' end)"
    )
    _seed(engine, e.key, "dqg", attributes=platform)
    run = _analyze(engine, pg_url, settings, e)
    p = chisquare([600, 400]).pvalue
    assert run.checks["srm"]["observed"] == 1.0 and run.checks["srm"]["passed"]
    for segment, counts in (("android", [400, 600]), ("ios", [600, 400])):
        check = run.checks[f"srm[platform={segment}]"]
        assert check["observed"] == pytest.approx(p, rel=1e-9)
        assert (check["severity"], check["passed"]) == ("critical", False)
        assert check["details"]["counts"] == dict(
            zip(["control", "treatment"], counts, strict=True)
        )
    critical = ["srm[platform=android]", "srm[platform=ios]"]
    assert run.failed() == dict.fromkeys(critical, "critical")
    _assert_blocked(engine, run, e.key, critical)


def test_unknown_variant_names_block(engine: Engine, pg_url: str, settings: Settings) -> None:
    """30 units exposed to 'purple', a variant the experiment does not define."""
    e = _experiment("dq_unknown")
    _define(engine, e)
    _seed(engine, e.key, "dqu")
    _sql(
        engine,
        "insert into assignments (experiment_key, unit_id, variant_key, assigned_at)"
        " select 'dq_unknown', 'dqu_p' || g, 'purple', timestamptz '2026-11-10' + g * interval"
        " '1 hour' from generate_series(1, 30) g",
    )
    run = _analyze(engine, pg_url, settings, e)
    gx = run.checks["gx_assignments_variant_key_in_set"]
    assert (gx["severity"], gx["passed"], gx["observed"], gx["threshold"]) == (
        "critical",
        False,
        30,
        0.0,
    )
    assert gx["details"]["sample"] == ["purple"]
    health = run.checks["unknown_variants"]
    assert (health["severity"], health["passed"], health["observed"]) == ("warning", False, 30)
    assert health["details"]["units_by_variant"] == {"purple": 30}
    assert run.failed() == {
        "gx_assignments_variant_key_in_set": "critical",
        "unknown_variants": "warning",
    }
    assert run.units() == {"control": 1000, "treatment": 1000}
    assert (run.result.run.units, run.result.run.excluded_units) == (2000, 30)
    _assert_blocked(engine, run, e.key, ["gx_assignments_variant_key_in_set"])
    assert "gx_assignments_variant_key_in_set failed (observed 30, threshold 0)" in run.rationale


@pytest.fixture(scope="module")
def null_keys_run(engine: Engine, pg_url: str, settings: Settings) -> Run:
    """Clean data plus NULL unit ids, variants, timestamps and event names in source tables."""
    key = "dq_nullkeys"
    e = _experiment(key)
    _define(engine, e)
    # The raw tables are NOT NULL; a configured source relation need not be.
    for table in ("assignments", "events"):
        _sql(engine, f"create table {key}_{table} as select * from {table} where false")  # noqa: S608
    sources = {"assignments": f"{key}_assignments", "events": f"{key}_events"}
    prefix = f"{key}_"
    _seed(engine, e.key, prefix, **sources)
    # g 1-3: NULL unit id (control); g 4-5: NULL variant (new units); g 6-9: NULL timestamp
    _sql(
        engine,
        f"insert into {key}_assignments (experiment_key, unit_id, variant_key, assigned_at)"  # noqa: S608
        " select :k, case when g <= 3 then null else :p || 'n' || g end,"
        " case when g between 4 and 5 then null else 'control' end,"
        " case when g >= 6 then null else timestamptz '2026-11-10' end"
        " from generate_series(1, 9) g",
        k=key,
        p=prefix,
    )
    # g 1-6: NULL event name; g 7-13: NULL timestamp (events of analysed units)
    _sql(
        engine,
        f"insert into {key}_events (unit_id, event_name, value, occurred_at)"  # noqa: S608
        " select :p || g, case when g <= 6 then null else 'buy' end, null,"
        " case when g > 6 then null else timestamptz '2026-11-15' end"
        " from generate_series(1, 13) g",
        p=prefix,
    )
    return _analyze(engine, pg_url, settings, e, **sources)


NULL_KEY_CHECKS = {
    "gx_assignments_unit_id_not_null": 3,
    "gx_assignments_variant_key_not_null": 2,
    "gx_assignments_assigned_at_not_null": 4,
    "gx_events_event_name_not_null": 6,
    "gx_events_occurred_at_not_null": 7,
}


def test_null_keys_block(engine: Engine, null_keys_run: Run) -> None:
    """GX counts every NULL key exactly; each is critical, so the run is blocked."""
    run = null_keys_run
    for name, count in NULL_KEY_CHECKS.items():
        check = run.checks[name]
        assert (check["severity"], check["passed"], check["observed"]) == (
            "critical",
            False,
            count,
        ), name
        assert check["details"]["sample"] == [None]
    assert {n for n, s in run.failed().items() if s == "critical"} == set(NULL_KEY_CHECKS)
    # the metric pass never sees the NULL-keyed rows
    assert run.units() == {"control": 1000, "treatment": 1000}
    assert run.sums() == {"control": 100.0, "treatment": 200.0}
    _assert_blocked(engine, run, "dq_nullkeys", list(NULL_KEY_CHECKS))


def test_null_keys_are_excluded_from_the_exposure_counts(null_keys_run: Run) -> None:
    """NULL-unit rows are no unit at all; NULL-variant units are unknown-variant exclusions."""
    run = null_keys_run
    assert (run.result.run.units, run.result.run.excluded_units) == (2000, 2)
    assert run.checks["min_sample"]["details"]["units_by_variant"] == {
        "control": 1000,
        "treatment": 1000,
    }
    assert run.checks["srm"]["details"]["counts"] == {"control": 1000, "treatment": 1000}
    assert run.checks["unknown_variants"]["observed"] == 2
    assert run.failed() == {
        **dict.fromkeys(NULL_KEY_CHECKS, "critical"),
        "unknown_variants": "warning",
    }


def test_null_values_of_a_value_metric_block(
    engine: Engine, pg_url: str, settings: Settings
) -> None:
    """10 of 300 purchases without an amount (3.3% > the 1% GX allows) on a revenue metric."""
    e = _experiment(
        "dq_nullvalue",
        metrics=[
            {"key": "conv", "kind": "proportion", "event": "buy", "role": "primary"},
            {"key": "revenue", "kind": "mean", "event": "buy", "value": "sum"},
        ],
    )
    _define(engine, e)
    # g = 20, 40, ..., 200: ten control purchases lose their amount
    _seed(engine, e.key, "dqv", value="case when g <= 200 and g % 20 = 0 then null else 10 end")
    run = _analyze(engine, pg_url, settings, e)
    check = run.checks["gx_events_value_not_null"]
    assert (check["severity"], check["passed"], check["observed"]) == ("critical", False, 10)
    assert check["threshold"] == pytest.approx(3.0)
    assert (check["details"]["element_count"], check["details"]["mostly"]) == (300, 0.99)
    assert run.failed() == {"gx_events_value_not_null": "critical"}
    # NULL amounts add nothing to the revenue sum (10 x 90 control purchases, 10 x 200 treatment)
    assert run.sums("revenue") == {"control": 900.0, "treatment": 2000.0}
    _assert_blocked(engine, run, e.key, ["gx_events_value_not_null"])
    assert "gx_events_value_not_null failed (observed 10, threshold 3)" in run.rationale


def test_values_that_would_overflow_a_sum_block_and_are_named(
    engine: Engine, pg_url: str, settings: Settings
) -> None:
    """1e200 (its square overflows double precision), NaN and -Infinity amounts on a revenue
    metric: the run is recorded unhealthy with the check naming those rows, every metric is still
    computed from the other rows, and the CLI panel says so (it used to fail the experiment with
    "value out of range: overflow")."""
    from rich.console import Console

    from abflow.console import experiment_panel

    e = _experiment(
        "dq_overflow",
        metrics=[
            {"key": "conv", "kind": "proportion", "event": "buy", "role": "primary"},
            {"key": "revenue", "kind": "mean", "event": "buy", "value": "sum"},
            {"key": "biggest", "kind": "mean", "event": "buy", "value": "max"},
        ],
    )
    _define(engine, e)
    bad = {20: "1e200", 40: "'NaN'", 41: "'-Infinity'"}
    value = "case " + " ".join(f"when g = {g} then {v}" for g, v in bad.items())
    value += " else 10 + g % 7 end"
    _seed(engine, e.key, "dqo", value=value)
    run = _analyze(engine, pg_url, settings, e)
    check = run.checks["gx_events_value_finite_in_range"]
    assert (check["severity"], check["passed"], check["observed"]) == ("critical", False, 3)
    named = sorted((r.split(" | ")[0], r.split(" | ")[3]) for r in check["details"]["sample"])
    assert named == [("dqo20", "1e+200"), ("dqo40", "NaN"), ("dqo41", "-Infinity")]
    assert run.failed() == {"gx_events_value_finite_in_range": "critical"}
    # Out-of-range amounts are read as missing (the other purchases add 10 + g % 7 each);
    # conversion still counts every purchase.
    kept = [g for g in range(1, 2001) if g not in bad]
    assert run.sums("revenue") == {
        "control": sum(10 + g % 7 for g in kept if g % 2 == 0 and g % 20 == 0),
        "treatment": sum(10 + g % 7 for g in kept if g % 2 == 1 and g % 10 == 1),
    }
    assert run.sums("conv") == {"control": 100.0, "treatment": 200.0}
    assert {i.metric_key for i in run.result.insights if i.error is None} == {
        "conv",
        "revenue",
        "biggest",
    }
    _assert_blocked(engine, run, e.key, ["gx_events_value_finite_in_range"])

    with engine.connect() as conn:
        (latest,) = readback.latest_results(conn, [e.key])
    out = Console(record=True, width=250, markup=False)
    out.print(experiment_panel(latest))
    panel = out.export_text()
    assert "status unhealthy" in panel
    assert "health: 1 check(s) failed" in panel
    assert "[critical] gx_events_value_finite_in_range (3)" in panel
    assert "dqo20 | buy |" in panel and "1e+200" in panel
    assert "recommendation: investigate" in panel


def test_empty_window_blocks(engine: Engine, pg_url: str, settings: Settings) -> None:
    """No exposure at all up to as_of: GX's row count and the traffic check fail critically."""
    e = _experiment("dq_empty")
    _define(engine, e)
    run = _analyze(engine, pg_url, settings, e)
    empty = run.checks["gx_assignments_window_not_empty"]
    assert (empty["severity"], empty["passed"], empty["observed"], empty["threshold"]) == (
        "critical",
        False,
        0.0,
        1.0,
    )
    traffic = run.checks["traffic"]
    assert (traffic["severity"], traffic["passed"], traffic["observed"]) == (
        "critical",
        False,
        None,
    )
    assert traffic["details"]["note"] == "no exposures at all"
    exposed = run.checks["gx_variant_stats_all_variants_exposed"]
    assert (exposed["passed"], exposed["observed"]) == (False, 2.0)
    assert sorted(exposed["details"]["sample"]) == ["control", "treatment"]
    assert run.checks["min_sample"]["observed"] == 0.0
    assert run.failed() == {
        "gx_assignments_window_not_empty": "critical",
        "gx_variant_stats_all_variants_exposed": "warning",
        "min_sample": "warning",
        "traffic": "critical",
    }
    assert (run.result.run.units, run.result.run.excluded_units) == (0, 0)
    _assert_blocked(engine, run, e.key, ["gx_assignments_window_not_empty", "traffic"])
    assert run.rationale == (
        "Health checks failed, so no decision is safe: gx_assignments_window_not_empty failed"
        " (observed 0, threshold 1); traffic failed (no exposures at all)."
        " Fix the data before acting."
    )


# --- the database going away mid-write -----------------------------------------------------------


@pytest.mark.parametrize("failure", ["connection_killed", "error_raised"])
def test_a_write_dying_midway_leaves_the_previous_run_intact(
    engine: Engine,
    pg_url: str,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    failure: str,
) -> None:
    """The rewrite of (experiment, as_of) dies after its delete: the old run stays readable."""
    from abflow.warehouse.engine import make_engine

    key = f"dq_dbdrop_{failure[:5]}"
    e = _experiment(key, decision={"auto_promote": False})
    _define(engine, e)
    _seed(engine, e.key, f"dqb{failure[0]}")
    good = _analyze(engine, pg_url, settings, e)
    assert (good.status, good.decision) == ("succeeded", "ship")

    def counts() -> tuple[Any, ...]:
        with engine.connect() as conn:
            return tuple(
                conn.execute(
                    text(
                        "select (select count(*) from analysis_runs where experiment_key = :k),"
                        " (select count(*) from variant_stats where experiment_key = :k),"
                        " (select count(*) from insights where experiment_key = :k),"
                        " (select count(*) from health_checks where experiment_key = :k)"
                    ),
                    {"k": key},
                ).one()
            )

    before = counts()
    assert before == (1, 2, 1, len(good.result.health_checks))
    # A second run for the same as_of (same data, new run id) whose write dies half-way.
    rerun = _assemble(engine, e, [])
    original_insert = writer._insert
    calls: list[str] = []
    writing = make_engine(settings)  # its own pool: the killed connection dies there

    def dying_insert(conn: Any, table: str, rows: Any, json_cols: Any = ()) -> None:
        calls.append(table)
        if table == "variant_stats" or table == "health_checks":
            # the delete and the new analysis_runs row are done; now the database goes away
            if failure == "error_raised":
                raise RuntimeError("simulated crash mid-write")
            with engine.begin() as killer:
                pid = conn.connection.dbapi_connection.info.backend_pid
                assert killer.execute(text("select pg_terminate_backend(:p)"), {"p": pid}).scalar()
        original_insert(conn, table, rows, json_cols)

    monkeypatch.setattr(writer, "_insert", dying_insert)
    expected_error = OperationalError if failure == "connection_killed" else RuntimeError
    try:
        with pytest.raises(expected_error), writing.begin() as conn:
            writer.lock_experiment(conn, key, 10)
            writer.write_result(conn, rerun)
    finally:
        writing.dispose()
    monkeypatch.setattr(writer, "_insert", original_insert)
    assert calls[0] == "analysis_runs"
    assert counts() == before
    with engine.connect() as conn:
        latest = conn.execute(
            text(
                "select run_id, decision, variant_key, run_status, as_of"
                " from latest_recommendations where experiment_key = :k"
            ),
            {"k": key},
        ).one()
    assert tuple(latest) == (good.result.run.run_id, "ship", "treatment", "succeeded", AS_OF)
    with engine.connect() as conn:
        (shown,) = readback.latest_results(conn, [key])
    assert shown["run"]["run_id"] == good.result.run.run_id
    assert shown["units"] == {"control": 1000, "treatment": 1000}
    assert len(shown["checks"]) == len(good.result.health_checks)
