"""Promotions respect people (issue 11): pins, the rollback stack, the promote gate, newest-only
auto-promotion, failed runs that never hide results, and no analysis of the future.

Every test works on its own copy of the demo's `checkout_button` (same exposures and events, so
its analysis as of the demo date is a healthy `ship green`), with its own experiment_config. Runs
go through `abflow.tasks.warehouse.write_results` (the flow's write step, without Prefect); the
manual verbs through the CLI.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from abflow.cli import app
from abflow.definitions import Experiment
from abflow.results import CheckOutcome, failed_run
from abflow.settings import Settings
from abflow.tasks.warehouse import record_failure, write_results
from tests.conftest import DEMO_AS_OF, analyse, copy_experiment

runner = CliRunner()
HOUR = timedelta(hours=1)
BROKEN = CheckOutcome("gx_assignments_keys_not_null", "critical", False, 3.0, 0.0)


@pytest.fixture()
def exp(request: pytest.FixtureRequest, engine: Engine, demo_loaded: dict[str, Any]) -> Experiment:
    """A fresh copy of checkout_button (auto_promote: true) named after the test."""
    name = re.sub(r"[^a-z0-9]+", "_", request.node.name.removeprefix("test_").lower())
    key = f"pin_{name[:30]}_{hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:6]}"
    return copy_experiment(engine, demo_loaded["experiments"]["checkout_button"], key)


def run(
    settings: Settings,
    engine: Engine,
    e: Experiment,
    as_of: datetime = DEMO_AS_OF,
    *,
    backfill: bool = False,
    checks: list[CheckOutcome] | None = None,
) -> str | None:
    """Analyse and write like the flow does; the promotion message write_results returns."""
    result = analyse(engine, e, as_of=as_of, checks=checks)
    if not checks and e.allocation == "fixed":
        assert result.recommendation is not None
        assert (result.recommendation.decision, result.recommendation.variant_key) == (
            "ship",
            "green",
        ), result.recommendation.rationale
    return write_results.fn(settings, str(settings.database_url), result, e, backfill)


def fail(settings: Settings, e: Experiment, as_of: datetime) -> None:
    """Record a failed run as the flow does when an experiment's analysis raises."""
    record_failure.fn(
        settings,
        str(settings.database_url),
        failed_run(
            run_id=uuid.uuid4(), experiment_key=e.key, as_of=as_of, flow_run_id=None,
            started_at=as_of, finished_at=as_of, message="OperationalError: connection reset",
        ),
    )  # fmt: skip


def cli(*args: str) -> tuple[int, list[str]]:
    """Exit code and non-empty output lines of one CLI call."""
    res = runner.invoke(app, list(args))
    return res.exit_code, [ln for ln in res.output.splitlines() if ln.strip()]


def config(engine: Engine, key: str) -> dict[str, Any]:
    with engine.connect() as conn:
        return dict(
            conn.execute(
                text("select * from experiment_config where experiment_key = :k"), {"k": key}
            )
            .mappings()
            .one()
        )


def audit(engine: Engine, key: str) -> list[tuple[Any, ...]]:
    """(action, variant_key, actor, version) of every promotions row, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "select action, variant_key, actor, version from promotions"
                " where experiment_key = :k order by id"
            ),
            {"k": key},
        ).all()
    return [tuple(r) for r in rows]


def served(engine: Engine, key: str) -> tuple[str | None, int, bool]:
    """(promoted variant, config version, pinned) as apps read them."""
    c = config(engine, key)
    return c["promoted_variant_key"], c["version"], c["pinned"]


def assert_every_version_step_audited(engine: Engine, key: str) -> None:
    """Versions 2..current each have exactly one promotions row (the demo config starts at 1)."""
    assert [a[3] for a in audit(engine, key)] == list(range(2, config(engine, key)["version"] + 1))


# --- pins ----------------------------------------------------------------------------------------


def test_after_rollback_the_next_ship_does_not_promote(
    cli_env: None, settings: Settings, engine: Engine, exp: Experiment
) -> None:
    assert run(settings, engine, exp) == "promoted 'green' (config v2)"
    code, out = cli("rollback", exp.key, "--reason", "support tickets", "--actor", "alice")
    assert code == 0, out
    assert out == [
        f"{exp.key}: rolled back 'green' to the weighted split and pinned (config v3): runs"
        f" leave it alone until `abflow unpin {exp.key}`"
    ]
    assert served(engine, exp.key) == (None, 3, True)
    message = run(settings, engine, exp, DEMO_AS_OF + HOUR)  # a newer run, ship green again
    assert message is not None and message.startswith(
        "not promoted: the config is pinned by alice since "
    )
    assert "(support tickets); `abflow unpin" in message
    assert served(engine, exp.key) == (None, 3, True)
    assert audit(engine, exp.key) == [
        ("promote", "green", "auto", 2),
        ("rollback", "green", "alice", 3),
    ]


def test_a_manual_promote_of_control_is_not_undone_by_the_next_run(
    cli_env: None, settings: Settings, engine: Engine, exp: Experiment
) -> None:
    assert run(settings, engine, exp) == "promoted 'green' (config v2)"
    code, out = cli("promote", exp.key, "control", "--reason", "brand review", "--actor", "bob")
    assert code == 0 and out == [
        f"{exp.key}: promoted 'control' and pinned (config v3): runs leave it alone until"
        f" `abflow unpin {exp.key}`"
    ]
    c = config(engine, exp.key)
    assert (c["promoted_variant_key"], c["promoted_config"]) == ("control", {"colour": "blue"})
    assert (c["pinned"], c["pinned_by"], c["pinned_reason"]) == (True, "bob", "brand review")
    for hours in (1, 2):
        assert (run(settings, engine, exp, DEMO_AS_OF + hours * HOUR) or "").startswith(
            "not promoted: the config is pinned by bob"
        )
    assert served(engine, exp.key) == ("control", 3, True)
    # Promoting what is already promoted and pinned changes nothing.
    assert cli("promote", exp.key, "control")[1] == [
        f"{exp.key}: 'control' is already promoted and pinned"
    ]
    assert_every_version_step_audited(engine, exp.key)


def test_promoting_what_the_rules_promoted_pins_it(
    cli_env: None, settings: Settings, engine: Engine, exp: Experiment
) -> None:
    run(settings, engine, exp)
    code, out = cli("promote", exp.key, "green", "--reason", "keep it", "--actor", "carol")
    assert code == 0 and "'green' was already promoted; pinned (config v3)" in out[0]
    assert audit(engine, exp.key) == [("promote", "green", "auto", 2), ("pin", "green", "carol", 3)]
    assert served(engine, exp.key) == ("green", 3, True)


def test_unpin_hands_control_back_to_the_rules(
    cli_env: None, settings: Settings, engine: Engine, exp: Experiment
) -> None:
    run(settings, engine, exp)
    assert cli("rollback", exp.key)[0] == 0
    assert (run(settings, engine, exp, DEMO_AS_OF + HOUR) or "").startswith("not promoted")
    code, out = cli("unpin", exp.key, "--reason", "fixed the tickets", "--actor", "alice")
    assert code == 0 and out[0].startswith(f"{exp.key}: unpinned (config v4; pinned by ")
    c = config(engine, exp.key)
    assert (c["pinned"], c["pinned_by"], c["pinned_reason"], c["pinned_at"]) == (
        False, None, None, None,
    )  # fmt: skip
    assert cli("unpin", exp.key) == (
        0, [f"{exp.key}: not pinned: the decision rules already control this config"],
    )  # fmt: skip
    assert run(settings, engine, exp, DEMO_AS_OF + 2 * HOUR) == "promoted 'green' (config v5)"
    assert [a[0] for a in audit(engine, exp.key)] == ["promote", "rollback", "unpin", "promote"]
    assert_every_version_step_audited(engine, exp.key)


def test_experiments_list_and_report_show_the_pin(
    cli_env: None, settings: Settings, engine: Engine, exp: Experiment, tmp_path: Any
) -> None:
    run(settings, engine, exp)
    cli("promote", exp.key, "control", "--reason", "legal hold", "--actor", "dana")
    code, out = cli("experiments", "list")
    assert code == 0
    listing = "\n".join(out)
    assert "v3 control" in listing and "pinned by dana on " in listing
    assert ": legal hold" in listing
    target = tmp_path / "r.html"
    assert cli("report", exp.key, "--out", str(target))[0] == 0
    page = target.read_text()
    assert "data-pin>pinned by dana on " in page and ": legal hold</span>" in page
    assert "promoted variant in config: <b>control</b> (v3)" in page
    cli("unpin", exp.key)
    cli("report", exp.key, "--out", str(target))
    assert "data-pin" not in target.read_text()
    assert "decision rules in control" in target.read_text()


def test_a_pinned_bandit_is_not_reweighted(
    cli_env: None, settings: Settings, engine: Engine, exp: Experiment
) -> None:
    bandit = exp.model_copy(update={"allocation": "bandit"})
    assert run(settings, engine, bandit) == "reweighted (config v2)"
    assert cli("promote", bandit.key, "control", "--reason", "freeze traffic")[0] == 0
    weights = config(engine, bandit.key)["variants"]
    assert (run(settings, engine, bandit, DEMO_AS_OF + HOUR) or "").startswith(
        "not reweighted: the config is pinned by "
    )
    assert config(engine, bandit.key)["variants"] == weights
    assert [a[0] for a in audit(engine, bandit.key)] == ["reweight", "promote"]


# --- the rollback stack --------------------------------------------------------------------------


def test_rollback_walks_back_to_the_weighted_split(
    cli_env: None, settings: Settings, engine: Engine, exp: Experiment
) -> None:
    run(settings, engine, exp)  # v2: the rules promote green
    steps = [
        (("promote", exp.key, "control"), "control", 3),
        (("promote", exp.key, "green"), "green", 4),
        (("rollback", exp.key), "control", 5),
        (("rollback", exp.key), "green", 6),  # undoes the manual promote of control
        (("rollback", exp.key), None, 7),  # undoes the rules' promotion: the weighted split
    ]
    for args, variant, version in steps:
        code, out = cli(*args, "--actor", "erin")
        assert code == 0, out
        assert served(engine, exp.key) == (variant, version, True), args
    code, out = cli("rollback", exp.key)
    assert code == 1
    assert out == [
        f"error: nothing to roll back in '{exp.key}': it is on its weighted split (config v7)"
    ]
    c = config(engine, exp.key)
    assert (c["promoted_variant_key"], c["promoted_config"], c["version"]) == (None, None, 7)
    assert c["variants"] == [
        {"key": "control", "weight": 0.5, "control": True, "config": {"colour": "blue"}},
        {"key": "green", "weight": 0.5, "control": False, "config": {"colour": "green"}},
    ]
    assert audit(engine, exp.key) == [
        ("promote", "green", "auto", 2),
        ("promote", "control", "erin", 3),
        ("promote", "green", "erin", 4),
        ("rollback", "green", "erin", 5),
        ("rollback", "control", "erin", 6),
        ("rollback", "green", "erin", 7),
    ]


# --- the promote gate ----------------------------------------------------------------------------


def test_promote_is_refused_without_a_run_and_forced_with_a_reason(
    cli_env: None, engine: Engine, exp: Experiment
) -> None:
    code, out = cli("promote", exp.key, "green")
    assert code == 1 and out == [
        f"error: refusing to promote 'green' in '{exp.key}': it has no analysis run yet"
        ' (override with --force --reason "…")'
    ]
    code, out = cli("promote", exp.key, "green", "--force")
    assert code == 1 and out == [
        "error: --force needs --reason: say why the latest run may be overridden"
    ]
    assert served(engine, exp.key) == (None, 1, False) and audit(engine, exp.key) == []
    code, out = cli("promote", exp.key, "green", "--force", "--reason", "launch deadline")
    assert code == 0, out
    c = config(engine, exp.key)
    assert (c["promoted_variant_key"], c["pinned"], c["version"]) == ("green", True, 2)
    with engine.connect() as conn:
        reason = conn.execute(
            text("select reason from promotions where experiment_key = :k"), {"k": exp.key}
        ).scalar_one()
    assert reason == "launch deadline [forced: it has no analysis run yet]"
    assert c["pinned_reason"] == reason


@pytest.mark.parametrize("latest", ["failed", "unhealthy"])
def test_promote_is_refused_when_the_latest_run_failed_or_is_unhealthy(
    latest: str, cli_env: None, settings: Settings, engine: Engine, exp: Experiment
) -> None:
    e = exp.model_copy(update={"decision": exp.decision.model_copy(update={"auto_promote": False})})
    assert run(settings, engine, e) is None  # a healthy ship, not auto-promoted
    newer = DEMO_AS_OF + HOUR
    if latest == "failed":
        fail(settings, e, newer)
        expected = "the latest run (as of 2026-11-21 01:00 UTC) failed: OperationalError"
    else:
        run(settings, engine, e, newer, checks=[BROKEN])
        expected = "the latest run is unhealthy (critical checks failed: gx_assignments_keys"
    code, out = cli("promote", e.key, "green", "--reason", "looks good")
    assert code == 1 and len(out) == 1
    assert out[0].startswith(f"error: refusing to promote 'green' in '{e.key}': {expected}")
    assert served(engine, e.key) == (None, 1, False)
    code, out = cli("promote", e.key, "green", "--force", "--reason", "checked by hand")
    assert code == 0, out
    assert served(engine, e.key) == ("green", 2, True)
    assert config(engine, e.key)["pinned_reason"].startswith(f"checked by hand [forced: {expected}")


# --- only the newest analysis, never a backfill --------------------------------------------------


def test_a_backfill_never_promotes_even_when_the_newest_run_failed(
    settings: Settings, engine: Engine, exp: Experiment
) -> None:
    fail(settings, exp, DEMO_AS_OF + timedelta(days=1))  # the newest run failed
    assert run(settings, engine, exp, backfill=True) == (
        "not promoted: backfills never change experiment_config"
    )
    assert served(engine, exp.key) == (None, 1, False) and audit(engine, exp.key) == []


def test_only_the_newest_analysis_may_promote(
    settings: Settings, engine: Engine, exp: Experiment
) -> None:
    fail(settings, exp, DEMO_AS_OF + timedelta(days=1))
    # A manual run of an earlier instant is not the newest: a failed newer run counts too.
    assert run(settings, engine, exp) == (
        "not promoted: a newer analysis (as of 2026-11-22 00:00 UTC) exists; only the newest"
        " may change it"
    )
    assert served(engine, exp.key) == (None, 1, False)
    assert run(settings, engine, exp, DEMO_AS_OF + timedelta(days=2)) == (
        "promoted 'green' (config v2)"
    )


# --- failed runs never hide results --------------------------------------------------------------


def test_a_failed_newer_run_does_not_hide_the_latest_results(
    cli_env: None, settings: Settings, engine: Engine, exp: Experiment, tmp_path: Any
) -> None:
    from abflow.warehouse.readback import latest_results

    run(settings, engine, exp)
    fail(settings, exp, DEMO_AS_OF + HOUR)
    with engine.connect() as conn:
        views = {
            view: conn.execute(
                text(f"select count(*), min(as_of) from {view} where experiment_key = :k"),  # noqa: S608
                {"k": exp.key},
            ).one()
            for view in ("latest_runs", "latest_insights", "latest_recommendations")
        }
        statuses = (
            conn.execute(
                text("select status from analysis_runs where experiment_key = :k order by as_of"),
                {"k": exp.key},
            )
            .scalars()
            .all()
        )
        latest = latest_results(conn, [exp.key])[0]
    assert statuses == ["succeeded", "failed"]  # the failure is recorded
    assert views["latest_runs"] == (1, DEMO_AS_OF)
    assert views["latest_recommendations"] == (1, DEMO_AS_OF)
    assert views["latest_insights"][0] > 0 and views["latest_insights"][1] == DEMO_AS_OF
    assert latest["run"]["as_of"] == DEMO_AS_OF
    assert latest["failed_newer"]["as_of"] == DEMO_AS_OF + HOUR
    target = tmp_path / "r.html"
    assert cli("report", exp.key, "--out", str(target))[0] == 0
    page = target.read_text()
    assert "data-failed-newer>The newest run, as of 2026-11-21 01:00 UTC, failed: " in page
    assert 'data-decision="ship"' in page


# --- no analysis of the future -------------------------------------------------------------------


def _runs_written(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("select count(*) from analysis_runs")).scalar_one())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["run", "--as-of", "2099-01-01T00:00:00Z", "--quiet"],
            "error: --as-of 2099-01-01 00:00 UTC is in the future (now is ",
        ),
        (
            ["backfill", "--start", "2098-12-30", "--end", "2099-01-01", "--quiet"],
            "error: --end 2099-01-01: that day is not over until 2099-01-02 00:00 UTC (now is ",
        ),
        (
            # today, read when the test runs (not at collection, which may be the day before)
            ["backfill", "--start", "2026-11-01", "--end", "<today>"],
            "error: --end ",  # today is not over yet either
        ),
    ],
)
def test_the_cli_refuses_to_analyse_the_future(
    args: list[str], message: str, cli_env: None, engine: Engine
) -> None:
    before = _runs_written(engine)
    code, out = cli(*(str(datetime.now(UTC).date()) if a == "<today>" else a for a in args))
    assert code == 1 and len(out) == 1, out
    assert out[0].startswith(message)
    assert out[0].endswith("nothing was analysed or written")
    assert _runs_written(engine) == before
