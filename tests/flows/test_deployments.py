"""prefect.yaml deployments load, point at real flows, and their parameter schemas validate."""

from __future__ import annotations

import importlib
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.conftest import repo_root


def _deployments() -> list[dict]:
    return yaml.safe_load((repo_root() / "prefect.yaml").read_text())["deployments"]


def _flow(entrypoint: str):  # type: ignore[no-untyped-def]
    path, name = entrypoint.split(":")
    module = importlib.import_module(Path(path).with_suffix("").as_posix().replace("/", "."))
    return getattr(module, name)


def test_every_deployment_has_a_flow_and_a_valid_schema() -> None:
    from prefect.utilities.callables import parameter_schema

    names = {d["name"] for d in _deployments()}
    assert names == {"analyze", "backfill", "promote", "rollback", "unpin"}
    for d in _deployments():
        schema = parameter_schema(_flow(d["entrypoint"])).model_dump_for_openapi()
        jsonschema.Draft202012Validator.check_schema(schema)
        assert d["enforce_parameter_schema"] is True


def test_backfill_form_has_date_pickers_and_rejects_bad_input() -> None:
    from prefect.utilities.callables import parameter_schema

    d = next(x for x in _deployments() if x["name"] == "backfill")
    schema = parameter_schema(_flow(d["entrypoint"])).model_dump_for_openapi()
    props = schema["properties"]
    assert props["start"]["format"] == "date" and props["end"]["format"] == "date"
    assert set(schema["required"]) == {"start", "end"}
    validator = jsonschema.Draft202012Validator(schema)
    validator.validate({"start": "2026-11-01", "end": "2026-11-05", "experiments": ["a_b"]})
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({"start": "2026-11-01"})


def test_analyze_is_scheduled_daily_with_a_weekly_full_refresh() -> None:
    """Every day at 06:15 UTC; Sunday's run passes full_refresh (a valid flow parameter)."""
    from prefect.utilities.callables import parameter_schema

    d = next(x for x in _deployments() if x["name"] == "analyze")
    crons = [(s["cron"], s.get("parameters", {})) for s in d["schedules"]]
    assert crons == [("15 6 * * 1-6", {}), ("15 6 * * 0", {"full_refresh": True})]
    schema = parameter_schema(_flow(d["entrypoint"])).model_dump_for_openapi()
    for _, params in crons:
        jsonschema.Draft202012Validator(schema).validate(params)
    from abflow.flows.serve import ANALYZE_CRON, FULL_REFRESH_CRON, deployments

    assert (ANALYZE_CRON, FULL_REFRESH_CRON) == (crons[0][0], crons[1][0])
    served = {x.name: x for x in deployments()}
    assert set(served) == {x["name"] for x in _deployments()}
    analyze = served["analyze"]
    assert [(s.schedule.cron, s.parameters) for s in analyze.schedules or []] == crons


def test_prefect_loads_every_entrypoint_from_the_project_root(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As `prefect deploy` and a worker load them: execute the file named by the entrypoint.

    The project's flows/*.py only import from the package: the flow loaded is the wheel's.
    """
    from prefect.flows import load_flow_from_entrypoint

    monkeypatch.chdir(repo_root())
    for d in _deployments():
        path, _ = d["entrypoint"].split(":")
        assert (repo_root() / path).is_file()
        # No placeholder: an import error in the file must fail here, not hide behind an AST parse.
        loaded = load_flow_from_entrypoint(d["entrypoint"], use_placeholder_flow=False)
        assert loaded is _flow(d["entrypoint"]), d["entrypoint"]
        assert loaded.fn.__module__.startswith("abflow.flows."), d["entrypoint"]


def test_module_entrypoints_need_no_checkout() -> None:
    """An installed wheel has no project files: `abflow.flows.<module>.<flow>` names the flows."""
    from prefect.flows import load_flow_from_entrypoint

    for d in _deployments():
        flow = _flow(d["entrypoint"])
        module_path = f"{flow.fn.__module__}.{flow.fn.__name__}"
        assert module_path.startswith("abflow.flows.")
        assert load_flow_from_entrypoint(module_path, use_placeholder_flow=False) is flow
