"""Capping, event property filters and ratio-CUPED sums in the warehouse vs numpy/pandas.

One crafted experiment (heavy-tailed and negative order values, pre-exposure activity, event
properties of every shape: strings, numbers, numeric text, non-numeric text, booleans, missing)
is analysed on PostgreSQL, DuckDB and Spark. The oracle pulls the raw rows into pandas (the test
only; the product never does), builds the per-unit values itself, takes caps with
`np.percentile(..., method="linear")` (= PostgreSQL percentile_cont) over all analysed units
pooled across arms, clips, and sums per arm. Every engine must match it to 1e-9.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine

from abflow.definitions import Experiment, parse_experiment
from abflow.results import SufficientStats
from abflow.settings import Settings
from abflow.warehouse import extract, lake
from abflow.warehouse.dialects import Source
from abflow.warehouse.engines import DuckDBExecutor, PostgresExecutor, open_warehouse

KEY = "mt_metric_options"
START = datetime(2026, 3, 2, tzinfo=UTC)
AS_OF = START + timedelta(days=10)
LOOKBACK = 7
N_UNITS = 800
PLANS = ["free", "pro", "team"]

BUY = {"kind": "mean", "event": "buy", "value": "sum"}
COUNT_BUYS = {"kind": "mean", "event": "buy", "value": "count"}
METRICS: list[dict[str, Any]] = [
    {"key": "conv", "kind": "proportion", "event": "buy", "role": "primary"},
    {"key": "rev_pct", **BUY, "capping": {"type": "percentile", "upper": 0.9, "lower": 0.05}},
    {"key": "rev_nz", **BUY, "capping": {"type": "percentile", "upper": 0.8, "ignore_zeros": True}},
    {"key": "rev_abs", **BUY, "capping": {"type": "absolute", "upper": 100.0, "lower": 1.0}},
    {"key": "rev_avg", "kind": "mean", "event": "buy", "value": "mean",
     "capping": {"type": "percentile", "upper": 0.75}},
    {"key": "rpv", "kind": "ratio", "numerator": {"event": "buy", "value": "sum"},
     "denominator": {"event": "visit"}, "capping": {"type": "percentile", "upper": 0.95}},
    {"key": "rpv_sides", "kind": "ratio",
     "numerator": {"event": "buy", "value": "sum",
                   "capping": {"type": "absolute", "upper": 80.0},
                   "filter": [{"property": "plan", "op": "=", "value": "pro"}]},
     "denominator": {"event": "visit", "capping": {"type": "percentile", "upper": 0.5}}},
    {"key": "f_eq", **COUNT_BUYS, "filter": [{"property": "plan", "op": "=", "value": "pro"}]},
    {"key": "f_ne", **COUNT_BUYS, "filter": [{"property": "plan", "op": "!=", "value": "pro"}]},
    {"key": "f_in", **BUY, "filter": [{"property": "plan", "op": "in", "values": ["pro", "team"]},
                                      {"property": "amount", "op": ">=", "value": 10}]},
    {"key": "f_not_in", **COUNT_BUYS,
     "filter": [{"property": "plan", "op": "not_in", "values": ["free", "team"]}]},
    {"key": "f_lt", **COUNT_BUYS, "filter": [{"property": "amount", "op": "<", "value": 20}]},
    {"key": "f_le", **COUNT_BUYS, "filter": [{"property": "qty", "op": "<=", "value": 2}]},
    {"key": "f_gt", **COUNT_BUYS, "filter": [{"property": "amount", "op": ">", "value": 30.5}]},
    {"key": "f_num_eq", **COUNT_BUYS, "filter": [{"property": "qty", "op": "=", "value": 3}]},
    {"key": "f_exists", **COUNT_BUYS, "filter": [{"property": "coupon", "op": "exists"}]},
    {"key": "f_bool", **COUNT_BUYS, "filter": [{"property": "gift", "op": "=", "value": True}]},
]


def experiment() -> Experiment:
    return parse_experiment(
        {
            "key": KEY,
            "name": "metric options",
            "status": "running",
            "start_at": START.isoformat(),
            "variants": [
                {"key": "control", "weight": 0.5, "control": True},
                {"key": "treatment", "weight": 0.5},
            ],
            "metrics": METRICS,
            "analysis": {"cuped": {"lookback_days": LOOKBACK}},
        }
    )


def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeded raw inputs: exposures over the first days, buys (with properties) and visits."""
    rng = np.random.default_rng(2026)
    units = np.array([f"mt_{i:05d}" for i in range(N_UNITS)])
    exposed = START + pd.to_timedelta(rng.uniform(0, 5 * 86400, N_UNITS).round(), "s")
    arm = np.where(rng.random(N_UNITS) < 0.5, "control", "treatment")
    assignments = pd.DataFrame(
        {"experiment_key": KEY, "unit_id": units, "variant_key": arm, "assigned_at": exposed,
         "attributes": [None] * N_UNITS}
    )
    rows: list[dict[str, Any]] = []
    for i in range(N_UNITS):
        for rate, lo, hi in ((1.2, 0.0, 4.0), (0.6, -LOOKBACK + 0.01, -0.01)):
            for _ in range(rng.poisson(rate)):
                amount = round(float(rng.lognormal(3.2, 1.0)), 2)
                if rng.random() < 0.05:
                    amount = -round(amount / 3, 2)  # refunds
                props: dict[str, Any] = {"plan": PLANS[rng.integers(3)], "amount": amount}
                r = rng.random()
                if r < 0.1:
                    props["amount"] = str(amount)  # numeric text: still a number
                elif r < 0.15:
                    props["amount"] = "n/a"  # never matches a numeric comparison
                elif r < 0.2:
                    del props["amount"]
                if rng.random() < 0.6:
                    props["qty"] = int(rng.integers(1, 5))
                if rng.random() < 0.3:
                    props["coupon"] = "WELCOME"
                if rng.random() < 0.2:
                    props["gift"] = bool(rng.random() < 0.5)
                if rng.random() < 0.1:
                    props["plan"] = None  # JSON null: matches nothing
                rows.append(
                    {"unit_id": units[i], "event_name": "buy", "value": amount,
                     "occurred_at": exposed[i] + pd.Timedelta(days=float(rng.uniform(lo, hi))),
                     "properties": props}
                )
        for phase_lo, phase_hi, rate in ((0.0, 4.0, 3.0), (-LOOKBACK + 0.01, -0.01, 2.0)):
            for _ in range(rng.poisson(rate)):
                rows.append(
                    {"unit_id": units[i], "event_name": "visit", "value": None,
                     "occurred_at": exposed[i]
                     + pd.Timedelta(days=float(rng.uniform(phase_lo, phase_hi))),
                     "properties": None}
                )
    events = pd.DataFrame(rows)
    events["occurred_at"] = pd.to_datetime(events["occurred_at"], utc=True).dt.round("us")
    assignments["assigned_at"] = pd.to_datetime(assignments["assigned_at"], utc=True)
    return assignments, events


# --- the oracle: pandas on the raw rows ---------------------------------------------------------


def _number(v: Any) -> float | None:
    """A property as a number: JSON numbers and plain numeric text (the documented semantics)."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, int | float):
        return float(v)
    text = str(v)
    if text.strip() != text or text.lower() in ("nan", "inf", "-inf", "infinity"):
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _text(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _passes(props: Any, filters: list[dict[str, Any]]) -> bool:
    for f in filters:
        raw = (props or {}).get(f["property"])
        op = f["op"]
        if op == "exists":
            ok = raw is not None
        else:
            values = f.get("values") or [f.get("value")]
            numeric = isinstance(values[0], int | float) and not isinstance(values[0], bool)
            have = _number(raw) if numeric else _text(raw)
            want = [float(v) for v in values] if numeric else [_text(v) for v in values]
            if have is None:
                ok = False
            elif op == "=":
                ok = have == want[0]
            elif op == "!=":
                ok = have != want[0]
            elif op == "in":
                ok = have in want
            elif op == "not_in":
                ok = have not in want
            else:
                ok = {"<": have < want[0], "<=": have <= want[0], ">": have > want[0],
                      ">=": have >= want[0]}[op]  # type: ignore[operator]
        if not ok:
            return False
    return True


def _side_values(
    a: pd.DataFrame, e: pd.DataFrame, event: str, agg: str, filters: list[dict[str, Any]],
    pre: bool,
) -> pd.Series:
    """Per-unit aggregate of one side's events after exposure (or in the lookback before)."""
    ev = e[e["event_name"] == event].merge(a[["unit_id", "assigned_at"]], on="unit_id")
    if pre:
        ev = ev[(ev["occurred_at"] < ev["assigned_at"])
                & (ev["occurred_at"] >= ev["assigned_at"] - pd.Timedelta(days=LOOKBACK))]
    else:
        ev = ev[(ev["occurred_at"] >= ev["assigned_at"]) & (ev["occurred_at"] <= AS_OF)]
    ev = ev[[_passes(p, filters) for p in ev["properties"]]]
    grouped = ev.groupby("unit_id")["value"]
    out = {"sum": grouped.sum(), "count": grouped.size().astype(float), "mean": grouped.mean()}[agg]
    units = a.set_index("unit_id").index
    if agg in ("sum", "count"):
        return out.reindex(units, fill_value=0.0).astype(float)
    return out.reindex(units)  # NaN: not analysed for a mean metric (unless pre: 0 fill)


def _caps(values: pd.Series, spec: dict[str, Any] | None) -> tuple[float | None, float | None]:
    if spec is None:
        return None, None
    if spec["type"] == "absolute":
        return spec.get("lower"), spec.get("upper")
    pool = values.dropna().to_numpy()
    if spec.get("ignore_zeros"):
        pool = pool[pool != 0]
    def pct(p: float | None) -> float | None:
        return None if p is None else float(np.percentile(pool, p * 100, method="linear"))
    return pct(spec.get("lower")), pct(spec.get("upper"))


def _clip(values: pd.Series, caps: tuple[float | None, float | None]) -> pd.Series:
    lo, hi = caps
    return values.clip(lower=lo, upper=hi)


def oracle(a: pd.DataFrame, e: pd.DataFrame) -> dict[tuple[str, str], dict[str, float | None]]:
    """Expected capped sums (and caps) per metric and arm, from the raw rows."""
    exp = experiment()
    arm = a.set_index("unit_id")["variant_key"]
    out: dict[tuple[str, str], dict[str, float | None]] = {}
    for m in exp.metrics:
        nf = [f.model_dump() for f in m.numerator_filter]
        df = [f.model_dump() for f in m.denominator_filter]
        y = _side_values(a, e, m.numerator_event, m.numerator_agg if m.kind != "proportion"
                         else "count", nf, pre=False)
        if m.kind == "proportion":
            y = (y > 0).astype(float)
        c = _side_values(a, e, m.numerator_event, m.numerator_agg if m.kind != "proportion"
                         else "count", nf, pre=True).fillna(0.0)
        if m.kind == "proportion":
            c = (c > 0).astype(float)
        frame = pd.DataFrame({"y": y, "c": c})
        if m.kind == "ratio":
            frame["x"] = _side_values(a, e, str(m.denominator_event), str(m.denominator_agg),
                                      df, pre=False)
            frame["d"] = _side_values(a, e, str(m.denominator_event), str(m.denominator_agg),
                                      df, pre=True).fillna(0.0)
        frame = frame[frame["y"].notna()]
        ncap = m.numerator_capping.model_dump() if m.numerator_capping else None
        dcap = m.denominator_capping.model_dump() if m.denominator_capping else None
        caps = {"y": _caps(frame["y"], ncap), "c": _caps(frame["c"], ncap)}
        if m.kind == "ratio":
            caps["x"] = _caps(frame["x"], dcap)
            caps["d"] = _caps(frame["d"], dcap)
        capped = pd.DataFrame({k: _clip(frame[k], caps[k]) for k in caps})
        capped["arm"] = arm.reindex(capped.index)
        for variant, g in capped.groupby("arm"):
            rec: dict[str, float | None] = {
                "units": float(len(g)),
                "sum": g["y"].sum(),
                "sum_squares": (g["y"] ** 2).sum(),
                "covariate_sum": g["c"].sum(),
                "covariate_sum_squares": (g["c"] ** 2).sum(),
                "covariate_sum_products": (g["c"] * g["y"]).sum(),
                "cap_lower": caps["y"][0],
                "cap_upper": caps["y"][1],
                "covariate_cap_upper": caps["c"][1],
            }
            if m.kind == "ratio":
                rec |= {
                    "denominator_sum": g["x"].sum(),
                    "denominator_sum_squares": (g["x"] ** 2).sum(),
                    "sum_products": (g["x"] * g["y"]).sum(),
                    "denominator_covariate_sum": g["d"].sum(),
                    "denominator_covariate_sum_squares": (g["d"] ** 2).sum(),
                    "denominator_covariate_sum_products": (g["d"] * g["x"]).sum(),
                    "covariate_cross_sum_products": (g["c"] * g["d"]).sum(),
                    "numerator_denominator_covariate_sum_products": (g["y"] * g["d"]).sum(),
                    "covariate_denominator_sum_products": (g["c"] * g["x"]).sum(),
                    "denominator_cap_upper": caps["x"][1],
                    "denominator_covariate_cap_upper": caps["d"][1],
                }
            out[(m.key, str(variant))] = rec
    return out


# --- engines ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def raw() -> tuple[pd.DataFrame, pd.DataFrame]:
    return frames()


@pytest.fixture(scope="module")
def expected(raw: tuple[pd.DataFrame, pd.DataFrame]) -> dict[tuple[str, str], dict[str, Any]]:
    return oracle(*raw)


def _on_postgres(engine: Engine, settings: Settings, raw: Any) -> list[SufficientStats]:
    from abflow.demo_data import load_frames

    with engine.begin() as conn:
        load_frames(conn.connection.dbapi_connection, settings.schema_name, *raw,
                    replace_experiments=[KEY])
    with engine.begin() as conn:
        stats, _ = extract.analyse_in_warehouse(
            PostgresExecutor(conn), experiment(), AS_OF,
            extract.default_sources("assignments", "events"), exposure=False,
        )
    return stats


def _on_duckdb(raw: Any) -> list[SufficientStats]:
    import duckdb

    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    lake.load_duckdb(con, *raw)
    con.execute("begin")
    stats, _ = extract.analyse_in_warehouse(
        DuckDBExecutor(con), experiment(), AS_OF,
        extract.default_sources("assignments", "events"), exposure=False,
    )
    con.close()
    return stats


def _on_spark(url: str, root: Path, raw: Any) -> list[SufficientStats]:
    sources = {k: Source.parse(v) for k, v in lake.write_demo_parquet(root, *raw).items()}
    with open_warehouse(url).session() as executor:
        stats, _ = extract.analyse_in_warehouse(
            executor, experiment(), AS_OF, sources, exposure=False
        )
    return stats


Runner = Callable[[], list[SufficientStats]]


@pytest.fixture(scope="module", params=["postgres", "duckdb", "spark"])
def engine_stats(
    request: pytest.FixtureRequest,
    raw: tuple[pd.DataFrame, pd.DataFrame],
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[str, list[SufficientStats]]:
    name = request.param
    if name == "postgres":
        engine = request.getfixturevalue("engine")
        settings = request.getfixturevalue("settings")
        return name, _on_postgres(engine, settings, raw)
    if name == "duckdb":
        return name, _on_duckdb(raw)
    url = request.getfixturevalue("spark_url")
    return name, _on_spark(url, tmp_path_factory.mktemp("mt_lake"), raw)


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None or (isinstance(b, float) and math.isnan(b)):
        return a is None and (b is None or math.isnan(b))
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-6)


def test_capped_sums_and_caps_match_numpy_on_every_engine(
    engine_stats: tuple[str, list[SufficientStats]],
    expected: dict[tuple[str, str], dict[str, Any]],
) -> None:
    name, stats = engine_stats
    got = {(s.metric_key, s.variant_key): s for s in stats if s.segment == "all"}
    assert set(expected) <= set(got)
    problems = []
    for key, rec in expected.items():
        s = got[key]
        for field, want in rec.items():
            have = getattr(s, field)
            if not _close(have, want):
                problems.append(f"{name} {key} {field}: {have!r} vs {want!r}")
    assert not problems, "\n".join(problems[:20])


def test_capped_metrics_carry_their_raw_sums(
    engine_stats: tuple[str, list[SufficientStats]],
    raw: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    _, stats = engine_stats
    a, e = raw
    got = {(s.metric_key, s.variant_key): s for s in stats if s.segment == "all"}
    arm = a.set_index("unit_id")["variant_key"]
    y = _side_values(a, e, "buy", "sum", [], pre=False)
    for variant in ("control", "treatment"):
        raw_sum = y[arm.reindex(y.index) == variant].sum()
        for key in ("rev_pct", "rev_nz", "rev_abs"):
            s = got[(key, variant)]
            assert s.capped and s.uncapped is not None and not s.uncapped.capped
            assert math.isclose(s.uncapped.sum, raw_sum, rel_tol=1e-9)
        # an uncapped metric has no raw twin
        assert not got[("f_eq", variant)].capped and got[("f_eq", variant)].uncapped is None


def test_filters_keep_what_pandas_keeps(
    engine_stats: tuple[str, list[SufficientStats]],
    expected: dict[tuple[str, str], dict[str, Any]],
) -> None:
    """Each operator selects a different, non-trivial share of the buys."""
    _, stats = engine_stats
    got = {(s.metric_key, s.variant_key): s.sum for s in stats if s.segment == "all"}
    totals = {k: got[(k, "control")] + got[(k, "treatment")] for k, _ in expected}
    for key in ("f_eq", "f_ne", "f_in", "f_not_in", "f_lt", "f_le", "f_gt", "f_num_eq",
                "f_exists", "f_bool"):
        assert totals[key] > 0, key
    # = and != split the buys that have a (non-null) plan; missing/null plans match neither
    assert totals["f_eq"] == totals["f_not_in"]


def test_incremental_refresh_equals_the_full_pass(raw: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    """Filters, caps and ratio CUPED through the incremental partials (DuckDB), daily refreshes."""
    from abflow.warehouse import incremental
    from abflow.warehouse.engines import DuckDBWarehouse
    from tests.engines.test_equality import _stats_equal

    warehouse = DuckDBWarehouse(":memory:")
    lake.load_duckdb(warehouse.connection(), *raw)
    sources = extract.default_sources("assignments", "events")
    exp = experiment()
    infos = []
    for as_of in (START + timedelta(days=3), START + timedelta(days=6), AS_OF):
        with warehouse.session() as executor:
            incremental.ensure_state_tables(executor)
            stats, info = incremental.refresh(
                executor, exp, as_of, sources, source_names=("assignments", "events")
            )
            full, _ = extract.analyse_in_warehouse(executor, exp, as_of, sources, exposure=False)
        infos.append(info)
        assert _stats_equal(full, stats) == [], info
    warehouse.close()
    assert [i.mode for i in infos] == ["full", "incremental", "incremental"]
    assert infos[2].partial_rows_sealed > 0
