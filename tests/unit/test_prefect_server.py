"""When the CLI starts Prefect's temporary server itself (abflow/prefect_server.py)."""

from __future__ import annotations

from pathlib import Path

from abflow.prefect_server import wanted


def test_started_when_nothing_configures_an_api(tmp_path: Path) -> None:
    assert wanted({}, prefect_home=tmp_path)


def test_not_started_when_an_api_url_is_set(tmp_path: Path) -> None:
    assert not wanted({"PREFECT_API_URL": "http://example:4200/api"}, prefect_home=tmp_path)


def test_not_started_when_temporary_servers_are_off(tmp_path: Path) -> None:
    assert not wanted({"PREFECT_SERVER_EPHEMERAL_ENABLED": "false"}, prefect_home=tmp_path)
    assert wanted({"PREFECT_SERVER_EPHEMERAL_ENABLED": "true"}, prefect_home=tmp_path)


def test_left_to_prefect_when_a_profile_sets_the_api_url(tmp_path: Path) -> None:
    (tmp_path / "profiles.toml").write_text(
        'active = "work"\n[profiles.work]\nPREFECT_API_URL = "http://server:4200/api"\n',
        encoding="utf-8",
    )
    assert not wanted({}, prefect_home=tmp_path)
    other = tmp_path / "elsewhere.toml"
    other.write_text('[profiles.default]\nPREFECT_LOGGING_LEVEL = "INFO"\n', encoding="utf-8")
    assert wanted({"PREFECT_PROFILES_PATH": str(other)}, prefect_home=tmp_path)
