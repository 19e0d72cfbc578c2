"""Every optional extra of the package installs what it promises (run with all extras installed).

`make install-dev` and the lowest-direct CI run install every extra, so each one is imported
here at both ends of its declared range; a new extra must be added to EXTRA_MODULES.
"""

from __future__ import annotations

import sys
from importlib import import_module
from importlib.metadata import distribution, requires, version

import pytest
from packaging.requirements import Requirement

# The modules each extra makes importable (what abflow or the user's SQLAlchemy URL loads).
EXTRA_MODULES: dict[str, list[str]] = {
    "web": ["httptools", "uvloop"],
    "duckdb": ["duckdb", "pyarrow.parquet"],
    "spark": ["pyspark.sql", "pyspark.sql.connect.session"],
    "snowflake": ["snowflake.sqlalchemy"],
    "bigquery": ["sqlalchemy_bigquery"],
    "databricks": ["databricks.sqlalchemy"],
    "trino": ["trino.sqlalchemy"],
    "blocks": ["prefect_sqlalchemy"],
}
# The SQLAlchemy dialect name each vendor extra registers (ABFLOW_WAREHOUSE_URL's scheme).
DIALECTS = {"snowflake": "snowflake", "bigquery": "bigquery", "databricks": "databricks",
            "trino": "trino"}


def _extra_requirements(extra: str) -> list[Requirement]:
    out = []
    for line in requires("abflow") or []:
        req = Requirement(line)
        if req.marker is not None and req.marker.evaluate({"extra": extra}) and not (
            req.marker.evaluate({"extra": ""})
        ):
            out.append(req)
    return out


def test_every_extra_is_checked_here() -> None:
    extras = set(distribution("abflow").metadata.get_all("Provides-Extra") or []) - {"dev"}
    assert extras == set(EXTRA_MODULES)


@pytest.mark.parametrize("extra", sorted(EXTRA_MODULES))
def test_extra_is_installed_within_its_range_and_imports(extra: str) -> None:
    requirements = _extra_requirements(extra)
    assert requirements, f"abflow[{extra}] declares nothing"
    for req in requirements:
        installed = version(req.name)
        assert req.specifier.contains(installed, prereleases=True), (
            f"abflow[{extra}]: {req.name} {installed} is outside {req.specifier}"
        )
    for module in EXTRA_MODULES[extra]:
        if module == "uvloop" and sys.platform == "win32":
            continue
        import_module(module)


@pytest.mark.parametrize("extra", sorted(DIALECTS))
def test_vendor_extra_registers_its_sqlalchemy_dialect(extra: str) -> None:
    from sqlalchemy.dialects import registry

    dialect = registry.load(DIALECTS[extra])
    assert dialect.name  # a real dialect class, loaded through the package's entry point


@pytest.mark.parametrize(("module", "extra"), [("duckdb", "duckdb"), ("pyspark.sql", "spark")])
def test_a_missing_engine_extra_is_named_in_one_line(
    monkeypatch: pytest.MonkeyPatch, module: str, extra: str
) -> None:
    from abflow.warehouse.engine import WarehouseUnavailable
    from abflow.warehouse.engines import DuckDBWarehouse, spark_session

    monkeypatch.setitem(sys.modules, module, None)  # what an environment without the extra sees
    with pytest.raises(WarehouseUnavailable) as caught:
        if extra == "duckdb":
            DuckDBWarehouse(":memory:")
        else:
            spark_session("spark://local[1]")
    message = str(caught.value)
    assert f"pip install 'abflow[{extra}]'" in message and "\n" not in message
