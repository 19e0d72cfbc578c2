"""Human-readable renderings of a run: JSON-safe table records and a markdown summary."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from abflow.results import ExperimentResult

# CommonMark lets a backslash escape any ASCII punctuation; these are the ones that format.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~])")


def md(value: object) -> str:
    """A warehouse or user string as inert markdown text: no formatting, links, tables or HTML.

    Markdown punctuation is backslash-escaped, `&`, `<` and `>` become entities and newlines
    spaces, so `<script>` or `](javascript:…)` in a variant key shows as typed.
    """
    text = _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(str(value).split()))
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def artifact_key(experiment_key: str, kind: str) -> str:
    """Prefect artifact key: lowercase letters, digits and dashes, stable per experiment."""
    return re.sub(r"[^a-z0-9-]", "-", f"abflow-{experiment_key}-{kind}".lower())


def utc_minute(value: datetime | None) -> str:
    """'2026-11-30 09:12 UTC' (or 'an unknown time')."""
    return "an unknown time" if value is None else f"{value.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def describe_pin(cfg: Mapping[str, Any] | None) -> str | None:
    """'pinned by alice on 2026-11-30 09:12 UTC: reason', or None when the rules own the config."""
    if not cfg or not cfg.get("pinned"):
        return None
    why = f": {cfg['pinned_reason']}" if cfg.get("pinned_reason") else ""
    return (
        f"pinned by {cfg.get('pinned_by') or 'unknown'} on {utc_minute(cfg.get('pinned_at'))}{why}"
    )


def _r(x: float | None, digits: int = 6) -> float | None:
    return None if x is None else round(float(x), digits)


def table_records(result: ExperimentResult) -> list[dict[str, Any]]:
    """Overall-segment insights as JSON-safe records (no pandas types, no datetimes)."""
    return [
        {
            "metric": i.metric_key,
            "role": i.metric_role,
            "variant": i.variant_key,
            "control_mean": _r(i.control_mean),
            "variant_mean": _r(i.variant_mean),
            "rel_lift": _r(i.rel_lift),
            "rel_ci_low": _r(i.rel_ci_low),
            "rel_ci_high": _r(i.rel_ci_high),
            "p_value": _r(i.p_value_adjusted),
            "significant": i.significant,
            "chance_to_beat_control": _r(i.chance_to_beat_control, 4),
            "units": f"{i.control_units}/{i.variant_units}",
            "error": i.error or "",
        }
        for i in result.insights
        if i.segment == "all"
    ]


def sample_text(details: Any, limit: int = 300) -> str:
    """` sample=[…]` naming a failed check's offending rows or values ('' when it has none)."""
    sample = details.get("sample") if isinstance(details, dict) else None
    if not sample:
        return ""
    text = json.dumps(sample, default=str, ensure_ascii=False)
    return f" sample={text if len(text) <= limit else text[: limit - 1] + '…'}"


def failed_checks_lines(result: ExperimentResult) -> list[str]:
    """One line per failed check: what, severity, observed vs threshold, a sample."""
    lines = []
    for c in result.health_checks:
        if c.passed:
            continue
        obs = "" if c.observed is None else f" observed={c.observed:.4g}"
        thr = "" if c.threshold is None else f" threshold={c.threshold:.4g}"
        lines.append(f"[{c.severity}] {c.check_name}:{obs}{thr}{sample_text(c.details)}")
    return lines


def markdown_summary(result: ExperimentResult, promotion_message: str | None = None) -> str:
    """Markdown with the recommendation, failed checks and the main results table.

    Every string from the warehouse or a definition goes through md(): the Prefect UI renders
    this as markdown.
    """
    run, rec = result.run, result.recommendation
    out = [f"# {md(run.experiment_key)} — as of {run.as_of.isoformat()}", ""]
    out.append(
        f"**Run status:** {md(run.status)} · units analysed: {run.units} · "
        f"excluded: {run.excluded_units}"
    )
    if rec is not None:
        target = f" **{md(rec.variant_key)}**" if rec.variant_key else ""
        out += ["", f"## Recommendation: **{md(rec.decision)}**{target}", "", md(rec.rationale)]
        if rec.days_remaining:
            out.append(f"\nDays remaining (estimate): {rec.days_remaining:.1f}")
    if promotion_message:
        out += ["", f"**Promotion:** {md(promotion_message)}"]
    failed = [f"- {md(line)}" for line in failed_checks_lines(result)]
    out += ["", "## Health", ""]
    out += failed if failed else ["All checks passed."]
    out += [
        "",
        "## Results (all units)",
        "",
        "| metric | variant | control | variant | rel. lift | 95% CI | p | significant |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in table_records(result):
        out.append(
            f"| {md(r['metric'])} | {md(r['variant'])} | {r['control_mean']:.4g} | "
            f"{r['variant_mean']:.4g} | {r['rel_lift'] * 100:+.2f}% | "
            f"[{r['rel_ci_low'] * 100:+.2f}%, {r['rel_ci_high'] * 100:+.2f}%] | "
            f"{r['p_value']:.3g} | {'yes' if r['significant'] else 'no'} |"
        )
    out += _bandit_markdown(rec.details if rec else None)
    key = md(run.experiment_key)
    out += ["", f"Report: abflow report {key} --out {key}.html"]
    return "\n".join(out)


def _bandit_markdown(details: Mapping[str, Any] | None) -> list[str]:
    """The bandit's estimator note and weight history as markdown ([] for fixed allocation)."""
    bandit = bandit_history(details)
    if bandit is None:
        return []
    head = (
        "Bandit: lifts are **period-weighted** (each allocation period compared on its own)."
        if bandit["period_weighted"]
        else "Bandit: lifts pool all units (no allocation periods known)."
    )
    out = ["", head]
    if bandit["periods"]:
        out += ["", "| period | from | weights | units |", "|---|---|---|---|"]
        for i, p in enumerate(bandit["periods"], start=1):
            weights = ", ".join(f"{md(k)} {float(w):.1%}" for k, w in p["weights"].items())
            units = ", ".join(f"{md(k)} {int(n):,}" for k, n in p["units"].items())
            out.append(f"| {i} | {md(p['start'])} | {weights} | {units} |")
    return out


def bandit_history(details: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A bandit run's estimator note and weight history from its recommendation details.

    {"period_weighted": bool, "estimator": str, "periods": [{"start", "weights", "units"}]},
    starts as '2026-11-30 09:12 UTC'; None for fixed allocation (no "bandit" entry).
    """
    bandit = (details or {}).get("bandit")
    if not isinstance(bandit, Mapping):
        return None
    periods = []
    for p in bandit.get("weight_history") or []:
        try:
            start = utc_minute(datetime.fromisoformat(str(p.get("start"))))
        except ValueError:
            start = str(p.get("start"))
        periods.append(
            {
                "start": start,
                "weights": dict(p.get("weights") or {}),
                "units": dict(p.get("units") or {}),
            }
        )
    return {
        "period_weighted": bool(bandit.get("period_weighted")),
        "estimator": str(bandit.get("estimator") or ""),
        "periods": periods,
    }
