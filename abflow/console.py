"""Rich rendering of results for the CLI.

Every string here comes from the warehouse (experiment names, keys, variants, check samples,
messages), so it is wrapped in Text and never parsed as Rich markup.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from abflow.redact import redact
from abflow.summary import bandit_history, describe_pin, sample_text, utc_minute

DECISION_STYLE = {
    "ship": "bold green",
    "keep_running": "yellow",
    "stop_inconclusive": "cyan",
    "rollback": "bold red",
    "investigate": "bold magenta",
}


def _pct(x: float) -> str:
    return f"{x * 100:+.2f}%"


def _p(p: float) -> str:
    # A p-value that underflows to 0 is "below what a double can hold", never exactly zero.
    return "<1e-300" if p < 1e-300 else f"{p:.3g}"


def experiment_panel(res: dict[str, Any]) -> Panel:
    """One experiment: units per variant, metric table, health and the recommendation."""
    run, rec = res["run"], res["recommendation"]
    table = Table(expand=True, show_lines=False)
    for col in (
        "metric",
        "role",
        "variant",
        "control",
        "variant mean",
        "lift (rel)",
        "95% CI",
        "p",
        "P(beat)",
    ):
        table.add_column(
            col,
            no_wrap=True,
            justify="right" if col not in {"metric", "role", "variant"} else "left",
        )
    for i in res["insights"]:
        style = (
            "green"
            if i["significant"] and i["chance_to_beat_control"] > 0.5
            else ("red" if i["significant"] else "")
        )
        quantile = "quantile_order_stats" in str(i.get("method") or "")
        table.add_row(
            # quantile metrics: the means columns hold each arm's quantile
            Text(i["metric_key"] + (" (quantile)" if quantile else "")),
            Text(i["metric_role"]),
            Text(i["variant_key"]),
            f"{i['control_mean']:.4g}",
            f"{i['variant_mean']:.4g}",
            Text(_pct(i["rel_lift"]), style=style),
            f"[{_pct(i['rel_ci_low'])}, {_pct(i['rel_ci_high'])}]",
            _p(i["p_value_adjusted"]),
            f"{i['chance_to_beat_control'] * 100:.1f}%",
        )
    units = ", ".join(f"{k}: {v:,}" for k, v in res["units"].items())
    parts: list[Any] = [
        Text(
            f"as of {run['as_of']:%Y-%m-%d %H:%M %Z} · status {run['status']} · units {units}"
            f" · excluded {run['excluded_units'] or 0}"
        ),
        table,
        *bandit_lines((rec or {}).get("details"), res.get("config")),
        *metric_option_lines(res),
        *exposure_age_lines(res.get("exposure_age") or []),
        *health_lines(run, res["checks"]),
    ]
    if rec:
        head = Text("recommendation: ")
        head.append(
            rec["decision"] + (f" {rec['variant_key']}" if rec["variant_key"] else ""),
            style=DECISION_STYLE.get(rec["decision"], ""),
        )
        parts += [head, Text(rec["rationale"], style="dim")]
    cfg = res.get("config")
    if cfg and cfg.get("promoted_variant_key"):
        parts.append(
            Text(
                f"promoted: {cfg['promoted_variant_key']} (config v{cfg['version']})",
                style="bold green",
            )
        )
    pin = describe_pin(cfg)
    if pin:
        parts.append(
            Text(f"config {pin}; runs leave it alone until `abflow unpin`", style="yellow")
        )
    newer = res.get("failed_newer")
    if newer:
        parts.append(
            Text(
                f"the newest run, as of {utc_minute(newer['as_of'])}, failed: "
                f"{redact(newer['message'] or 'no message')}"
                " (shown: the newest run that did not fail)",
                style="red",
            )
        )
    return Panel(Group(*parts), title=Text(str(run["experiment_key"]), style="bold"), expand=True)


def exposure_age_lines(rows: list[dict[str, Any]]) -> list[Text]:
    """Relative lift by days since first exposure, one line per metric and treatment."""
    by_pair: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        by_pair.setdefault((r["metric_key"], r["variant_key"]), []).append(r)
    lines = []
    for (metric, variant), cohort_rows in by_pair.items():
        if sum(r["rel_lift"] is not None for r in cohort_rows) < 2:
            continue  # one cohort says nothing about novelty
        line = Text(f"  {metric} {variant}: ")
        for r in sorted(cohort_rows, key=lambda r: r["first_day"]):
            lift = "—" if r["rel_lift"] is None else _pct(r["rel_lift"])
            line.append(f"days {r['cohort']} {lift}  ")
        lines.append(line)
    if lines:
        lines.insert(0, Text("lift by days since first exposure:", style="bold"))
    return lines


def bandit_lines(details: Any, config: dict[str, Any] | None) -> list[Any]:
    """A bandit's estimator note and weight history (nothing for fixed allocation)."""
    bandit = bandit_history(details)
    if bandit is None:
        return []
    if bandit["period_weighted"]:
        note = Text("bandit: lifts are period-weighted", style="bold cyan")
        note.append(
            " (each allocation period compared on its own, then combined: "
            "Batched OLS, Zhang, Janson & Murphy 2020); SRM against the weights per period",
            style="dim",
        )
    else:
        note = Text("bandit: lifts pool all units (no allocation periods known)", style="yellow")
    out: list[Any] = [note]
    periods = bandit["periods"]
    if periods:
        arms = list(periods[-1]["weights"])
        table = Table(title="weight history", title_justify="left", expand=False)
        table.add_column("period")
        table.add_column("from")
        for arm in arms:
            table.add_column(Text(f"{arm} weight"), justify="right")
        for arm in arms:
            table.add_column(Text(f"{arm} units"), justify="right")
        for i, p in enumerate(periods, start=1):
            table.add_row(
                str(i),
                p["start"],
                *(f"{float(p['weights'].get(a, 0)):.1%}" for a in arms),
                *(f"{int(p['units'].get(a, 0)):,}" for a in arms),
            )
        served = {str(v["key"]): float(v["weight"]) for v in (config or {}).get("variants") or []}
        if served:
            table.add_row(
                "next", "now (config)", *(f"{served.get(a, 0.0):.1%}" for a in arms),
                *("" for _ in arms),
            )  # fmt: skip
        out.append(table)
    return out


def metric_option_lines(res: dict[str, Any]) -> list[Text]:
    """Capped metrics with their uncapped result beside; filtered metrics with their filter."""
    notes = res.get("metric_notes") or {}
    lines = []
    for i in res["insights"]:
        note = notes.get(i["metric_key"], {})
        if note.get("capping") and i.get("uncapped_rel_lift") is not None:
            line = Text(f"{i['metric_key']} ({i['variant_key']}) {note['capping']}: ", style="dim")
            line.append(f"capped {_pct(i['rel_lift'])} p {_p(i['p_value'])}")
            line.append(
                f" · uncapped {i['uncapped_control_mean']:.4g} → {i['uncapped_variant_mean']:.4g}"
                f", {_pct(i['uncapped_rel_lift'])} [{_pct(i['uncapped_rel_ci_low'])}, "
                f"{_pct(i['uncapped_rel_ci_high'])}] p {_p(i['uncapped_p_value'])}"
            )
            lines.append(line)
    for key, note in notes.items():
        if note.get("filter"):
            lines.append(Text(f"{key}: only events where {note['filter']}", style="dim"))
    return lines


def health_lines(run: dict[str, Any], checks: list[dict[str, Any]]) -> list[Text]:
    """What the checks say: passed, the failures (with the rows they name), or not evaluated."""
    if run["status"] == "failed":
        line = Text("health: not evaluated, the run failed: ", style="red")
        line.append(redact(run.get("message") or "no message"))
        return [line]
    failed = [c for c in checks if not c["passed"]]
    if not failed:
        return [Text("health: all checks passed", style="green")]
    lines = [Text(f"health: {len(failed)} check(s) failed", style="red")]
    for c in sorted(failed, key=lambda c: (c["severity"] != "critical", c["check_name"])):
        style = "red" if c["severity"] == "critical" else "yellow"
        obs = "" if c["observed"] is None else f" ({c['observed']:.3g})"
        line = Text(f"  [{c['severity']}] ", style=style)
        line.append(f"{c['check_name']}{obs}{sample_text(c.get('details'), 160)}")
        lines.append(line)
    return lines


def print_results(console: Console, results: list[dict[str, Any]]) -> None:
    """Print a panel per experiment."""
    if not results:
        console.print("no analysis results yet")
    for res in results:
        console.print(experiment_panel(res))
