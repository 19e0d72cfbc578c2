"""`abflow simulate`: a definition's operating characteristics under its own daily schedule."""

from __future__ import annotations

import json
import re
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

_EFFECT = re.compile(r"^(?P<key>[a-z0-9_]+)=(?P<value>[+-]?\d+(\.\d+)?)(?P<pct>%?)$")
_BASELINE = re.compile(r"^(?P<key>[a-z0-9_]+)=(?P<mean>[+-]?\d+(\.\d+)?)(:(?P<sd>\d+(\.\d+)?))?$")
_BLOCKS = " ▁▂▃▄▅▆▇█"


class SimulateError(ValueError):
    """A bad simulate option; the message is one line naming it."""


def parse_assignments(values: list[str], option: str, *, percent: bool) -> dict[str, float]:
    """`metric=+5%` / `metric=0.05` pairs into a dict ('5%' and '0.05' both mean 5%)."""
    out: dict[str, float] = {}
    for raw in values:
        m = _EFFECT.match(raw.strip())
        if m is None:
            raise SimulateError(f"{option} {raw!r}: expected METRIC=VALUE, e.g. conv=+5%")
        value = float(m["value"])
        if m["pct"]:
            if not percent:
                raise SimulateError(f"{option} {raw!r}: give a plain number, e.g. conv=0.1")
            value /= 100.0
        out[m["key"]] = value
    return out


def _advance(bar: Progress, task: TaskID, done: int) -> None:
    bar.update(task, completed=done)


def parse_baselines(values: list[str]) -> tuple[dict[str, float], dict[str, float]]:
    """`metric=0.1` (rate or mean) and `metric=850:250` (mean:sd) into means and sds."""
    means: dict[str, float] = {}
    sds: dict[str, float] = {}
    for raw in values:
        m = _BASELINE.match(raw.strip())
        if m is None:
            raise SimulateError(f"--baseline {raw!r}: expected METRIC=MEAN or METRIC=MEAN:SD")
        means[m["key"]] = float(m["mean"])
        if m["sd"] is not None:
            sds[m["key"]] = float(m["sd"])
    return means, sds


def sparkline(series: list[float], top: float) -> str:
    """One character per day, height proportional to the value (top = full block)."""
    if top <= 0:
        return _BLOCKS[0] * len(series)
    return "".join(_BLOCKS[min(8, round(8 * v / top))] for v in series)


def render(console: Console, results: list[Any], definition: str, runs: int, days: int) -> None:
    """Table of the rates and a per-day chart of cumulative P(ship) and P(rollback)."""
    table = Table(
        title=f"{definition}: {runs} simulated experiments, analysed daily for {days} days"
    )
    for col in ("scenario", "P(ship)", "P(rollback)", "P(stop_inconclusive)", "median days to act"):
        table.add_column(col, justify="left" if col == "scenario" else "right")
    for r in results:
        effects = ", ".join(f"{k} {v * 100:+g}%" for k, v in r.scenario.effects.items())
        table.add_row(
            r.scenario.name + (f" ({effects})" if effects else ""),
            f"{r.p_ship * 100:.1f}%",
            f"{r.p_rollback * 100:.1f}%",
            f"{r.p_stop_inconclusive * 100:.1f}%",
            "—" if r.median_days_to_decision is None else f"{r.median_days_to_decision:g}",
        )
    console.print(table)
    console.print(f"cumulative share of runs by day 1→{days} (each row scaled to its final value):")
    for r in results:
        for label, series in (("ship", r.ship_by_day), ("rollback", r.rollback_by_day)):
            top = max(series) if series else 0.0
            name = r.scenario.name if label == "ship" else ""
            console.print(f"  {name:<8} {label:<8} {sparkline(series, top)}  {top * 100:5.1f}%")


def simulate_command(
    path: Annotated[Path, typer.Argument(help="experiment YAML file")],
    days: int = typer.Option(28, "--days", min=1, max=730, help="daily looks to simulate"),
    units_per_day: int = typer.Option(
        2000, "--units-per-day", min=2, help="exposures per day, split by the variant weights"
    ),
    effect: Annotated[
        list[str] | None,
        typer.Option("--effect", help="true relative effect for every treatment, e.g. conv=+5%"),
    ] = None,
    baseline: Annotated[
        list[str] | None,
        typer.Option(
            "--baseline",
            help="control rate or mean (mean metrics also :sd), e.g. conv=0.1, latency_ms=850:250",
        ),
    ] = None,
    runs: int = typer.Option(1000, "--runs", min=10, max=100_000),
    seed: int = typer.Option(0, "--seed"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """Operating characteristics of a definition's decision rules, simulated (A/A and effect)."""
    from abflow.cli import CliError, _run_guarded, console
    from abflow.decisions.library import load_definition
    from abflow.decisions.simulate import Scenario, simulate

    def go() -> None:
        try:
            effects = parse_assignments(effect or [], "--effect", percent=True)
            baselines, sds = parse_baselines(baseline or [])
        except SimulateError as exc:
            raise CliError(str(exc)) from None
        experiment = load_definition(path)
        known = {m.key for m in experiment.metrics}
        for option, given in (("--effect", effects), ("--baseline", baselines)):
            unknown = sorted(set(given) - known)
            if unknown:
                raise CliError(
                    f"{option}: unknown metric {unknown[0]!r} (metrics: {', '.join(sorted(known))})"
                )
        scenarios = [Scenario("A/A")]
        if effects:
            scenarios.append(Scenario("effect", effects))
        results = []
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
            disable=as_json,
        ) as bar:
            for i, sc in enumerate(scenarios):
                task = bar.add_task(f"simulating {sc.name}", total=runs)
                results.append(
                    simulate(
                        experiment,
                        sc,
                        days=days,
                        units_per_day=units_per_day,
                        runs=runs,
                        seed=seed + i,
                        baselines=baselines,
                        sds=sds,
                        progress=partial(_advance, bar, task),
                    )
                )
        if as_json:
            print(
                json.dumps(
                    {"experiment": experiment.key, "results": [r.as_dict() for r in results]}
                )
            )
            return
        render(console, results, experiment.key, runs, days)

    _run_guarded(go)
