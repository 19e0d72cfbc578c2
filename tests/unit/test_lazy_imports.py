"""What a run imports before its flow starts: NumPy and SciPy wait until the warehouse works."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import abflow.stats
from tests.conftest import repo_root

CODE = """
import sys
import abflow.cli, abflow.flows.analyze, abflow.warehouse.promotion, abflow.warehouse.plan
heavy = ("scipy", "abflow.pipeline", "abflow.stats.comparison")
print(sorted(m for m in heavy if m in sys.modules))
"""


def test_the_run_path_imports_no_statistics_before_the_flow_starts() -> None:
    """The CLI, the analysis flow and the modules its first tasks use, in a fresh interpreter.

    The statistics (abflow's, with SciPy and NumPy: ~0.5 s) are imported on a thread once the
    data-quality checks are done (flows/analyze.py `_STATISTICS_IMPORTS`), beside the
    extraction's wait. NumPy itself is not asserted: a dependency at its lowest supported version
    imports it on its own (`make test-lowest`).
    """
    out = subprocess.run(
        [sys.executable, "-c", CODE],
        cwd=repo_root(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", abflow.stats.__all__)
def test_every_public_name_of_the_stats_package_resolves_to_its_module(name: str) -> None:
    """`abflow.stats` imports its names lazily (PEP 562); each is its module's own object."""
    module = importlib.import_module(abflow.stats._MODULES[name])
    assert getattr(abflow.stats, name) is getattr(module, name)


def test_the_stats_package_still_hands_out_submodules_and_refuses_unknown_names() -> None:
    """`st.frequentist` works without an explicit import; a typo is an AttributeError.

    No public name is also a submodule's: importing that submodule would rebind the package's
    attribute to the module (hence `abflow.stats.comparison` holds `compare`).
    """
    assert abflow.stats.frequentist is importlib.import_module("abflow.stats.frequentist")
    submodules = {m.name for m in pkgutil.iter_modules(abflow.stats.__path__)}
    assert "comparison" in submodules and not set(abflow.stats.__all__) & submodules
    with pytest.raises(AttributeError, match="no attribute 'compar'"):
        _ = abflow.stats.compar  # type: ignore[attr-defined]


def test_the_stats_package_types_and_exports_the_names_it_imports_lazily() -> None:
    """The TYPE_CHECKING imports (what type checkers see) name each lazy name's own module,
    and __all__ lists exactly the lazy names."""
    tree = ast.parse(Path(abflow.stats.__file__).read_text())
    typed = {
        alias.asname or alias.name: node.module
        for block in tree.body
        if isinstance(block, ast.If) and ast.unparse(block.test) == "TYPE_CHECKING"
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert typed == abflow.stats._MODULES
    assert sorted(abflow.stats.__all__) == sorted(abflow.stats._MODULES)
