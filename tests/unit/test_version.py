"""`abflow --version` and `abflow.__version__` come from the installed metadata (pyproject.toml)."""

from __future__ import annotations

import tomllib
from importlib.metadata import version

from typer.testing import CliRunner

import abflow
from abflow.cli import app
from tests.conftest import repo_root


def test_version_has_one_source() -> None:
    declared = tomllib.loads((repo_root() / "pyproject.toml").read_text())["project"]["version"]
    assert abflow.__version__ == version("abflow") == declared


def test_cli_prints_the_version_and_prefects() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.startswith(f"abflow {abflow.__version__} (prefect {version('prefect')}, ")
