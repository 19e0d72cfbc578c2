"""Decision rules: one recommendation per experiment and run, with a plain-English rationale."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from scipy.stats import norm

from abflow import stats as st
from abflow.definitions import Experiment, Metric
from abflow.results import CheckOutcome, DecisionKind, InsightRow, VariantStatRow

DEFAULT_RELATIVE_MDE = 0.05  # planned sample uses a 5% relative MDE when a metric sets none


@dataclass(frozen=True)
class Recommendation:
    """The decision for one run, before it is tied to a run id."""

    decision: DecisionKind
    variant_key: str | None
    rationale: str
    days_remaining: float | None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DecisionInputs:
    """Everything the rules look at (overall segment only)."""

    experiment: Experiment
    insights: list[InsightRow]
    variant_stats: list[VariantStatRow]
    checks: list[CheckOutcome]
    days_since_start: float
    units_by_variant: dict[str, int]


def _pct(x: float) -> str:
    return f"{x * 100:+.1f}%"


def _better(metric: Metric, r: InsightRow) -> bool:
    good_sign = r.rel_lift > 0 if metric.direction == "increase" else r.rel_lift < 0
    return r.significant and r.error is None and good_sign


def _worse(metric: Metric, r: InsightRow) -> bool:
    bad_sign = r.rel_lift < 0 if metric.direction == "increase" else r.rel_lift > 0
    return r.significant and r.error is None and bad_sign


def guardrail_ok(metric: Metric, r: InsightRow, alpha: float) -> tuple[bool, str]:
    """Non-inferiority, one-sided at α: the harmful-side (1-2α) bound stays within the margin."""
    margin = metric.non_inferiority_margin or 0.0
    # Stored CIs are two-sided at 1-α; rebuild the one-sided bound at α from the same std error.
    half = (r.rel_ci_high - r.rel_ci_low) / 2
    z_two = norm.ppf(1 - alpha / 2)
    se = half / z_two if z_two > 0 else 0.0
    bound_shift = norm.ppf(1 - alpha) * se
    if metric.direction == "increase":
        bound = r.rel_lift - bound_shift
        ok = bound > -margin
        text = f"{metric.key} lower bound {_pct(bound)} vs margin -{margin * 100:.1f}%"
    else:
        bound = r.rel_lift + bound_shift
        ok = bound < margin
        text = f"{metric.key} upper bound {_pct(bound)} vs margin +{margin * 100:.1f}%"
    return ok, text


def constraint_status(
    experiment: Experiment, rows: list[VariantStatRow], alpha: float
) -> dict[str, dict[str, Any]]:
    """Per variant: each constraint metric's mean, its one-sided bound and whether it is met."""
    out: dict[str, dict[str, Any]] = {
        v.key: {"met": True, "metrics": {}} for v in experiment.variants
    }
    z = norm.ppf(1 - alpha)
    for m in experiment.metrics:
        if m.role != "constraint":
            continue
        for r in rows:
            if r.metric_key != m.key or r.segment != "all" or r.variant_key not in out:
                continue
            if r.mean is None or r.units < 2:
                out[r.variant_key]["met"] = False
                out[r.variant_key]["metrics"][m.key] = {"mean": None, "met": False}
                continue
            se = math.sqrt(max(r.variance or 0.0, 0.0) / r.units)
            upper, lower = r.mean + z * se, r.mean - z * se
            met = bool((m.max is None or upper <= m.max) and (m.min is None or lower >= m.min))
            upper, lower = float(upper), float(lower)
            out[r.variant_key]["metrics"][m.key] = {
                "mean": r.mean,
                "upper": upper,
                "lower": lower,
                "max": m.max,
                "min": m.min,
                "met": met,
            }
            out[r.variant_key]["met"] = out[r.variant_key]["met"] and met
    return out


def required_sample(experiment: Experiment, rows: list[VariantStatRow]) -> int | None:
    """Units per variant needed to detect the primary metric's MDE at the configured power."""
    m = experiment.primary_metric
    control = next(
        (
            r
            for r in rows
            if r.metric_key == m.key
            and r.segment == "all"
            and r.variant_key == experiment.control.key
        ),
        None,
    )
    if control is None or not control.mean:
        return None
    a = experiment.analysis
    mde = m.mde or DEFAULT_RELATIVE_MDE
    kind: Literal["proportion", "mean"] = "proportion" if m.kind == "proportion" else "mean"
    std = math.sqrt(control.variance) if control.variance else None
    if kind == "mean" and not std:
        return None
    n = st.sample_size_per_variant(
        abs(control.mean),
        mde,
        relative=True,
        alpha=a.alpha,
        power=a.power,
        variants=len(experiment.variants),
        kind=kind,
        std=std,
    )
    return max(int(n), a.min_sample_size)


def _pareto(experiment: Experiment, rows: list[VariantStatRow]) -> list[str]:
    """Variants not dominated on (primary metric, every constraint metric) by another variant."""
    primary = experiment.primary_metric
    cons = [m for m in experiment.metrics if m.role == "constraint"]
    means: dict[str, dict[str, float]] = {}
    for r in rows:
        if r.segment == "all" and r.mean is not None:
            means.setdefault(r.variant_key, {})[r.metric_key] = r.mean

    def score(v: str, m: Metric) -> float:
        x = means.get(v, {}).get(m.key, math.nan)
        return x if m.direction == "increase" else -x

    keys = [v.key for v in experiment.variants if v.key in means]
    metrics = [primary, *cons]
    front = []
    for a in keys:
        dominated = any(
            all(score(b, m) >= score(a, m) for m in metrics)
            and any(score(b, m) > score(a, m) for m in metrics)
            for b in keys
            if b != a
        )
        if not dominated:
            front.append(a)
    return front


def decide(inp: DecisionInputs) -> Recommendation:
    """Apply the rules: investigate, ship, rollback, stop_inconclusive or keep_running."""
    e = inp.experiment
    a = e.analysis
    primary = e.primary_metric
    overall = [r for r in inp.insights if r.segment == "all"]
    by_metric: dict[tuple[str, str], InsightRow] = {
        (r.metric_key, r.variant_key): r for r in overall
    }
    details: dict[str, Any] = {"days_since_start": round(inp.days_since_start, 2)}

    failed = [c for c in inp.checks if not c.passed and c.severity == "critical"]
    if failed:
        reasons = "; ".join(_check_reason(c) for c in failed)
        return Recommendation(
            "investigate",
            None,
            f"Health checks failed, so no decision is safe: {reasons}. Fix the data before acting.",
            None,
            {**details, "failed_checks": [c.check_name for c in failed]},
        )

    configured = [inp.units_by_variant.get(v.key, 0) for v in e.variants]
    smallest = min(configured) if configured else 0
    needed = required_sample(e, inp.variant_stats)
    target = needed or a.min_sample_size
    rate_per_day = smallest / inp.days_since_start if inp.days_since_start > 0 else 0.0
    days_remaining = max(0.0, (target - smallest) / rate_per_day) if rate_per_day > 0 else None
    details.update({"units_per_variant_min": smallest, "required_per_variant": needed})
    sample_ok = smallest >= a.min_sample_size
    runtime_ok = inp.days_since_start >= e.decision.min_runtime_days

    constraints = constraint_status(e, inp.variant_stats, a.alpha)
    if any(m.role == "constraint" for m in e.metrics):
        details["constraints"] = constraints
        details["pareto_optimal"] = _pareto(e, inp.variant_stats)

    qualified: list[tuple[str, InsightRow, list[str]]] = []
    harmed: dict[str, list[str]] = {}
    guards_by_variant: dict[str, bool] = {}
    notes: list[str] = []
    for t in e.treatments:
        p = by_metric.get((primary.key, t.key))
        if p is None:
            continue
        guard_texts, harms = [], []
        guards_ok = True
        for g in (m for m in e.metrics if m.role == "guardrail"):
            gr = by_metric.get((g.key, t.key))
            if gr is None:
                continue
            ok, txt = guardrail_ok(g, gr, a.alpha)
            guards_ok = guards_ok and ok
            guard_texts.append(txt)
            if _worse(g, gr) and not ok:
                harms.append(f"guardrail {g.key} worse by {_pct(gr.rel_lift)} (p={gr.p_value:.3g})")
        if _worse(primary, p):
            harms.append(f"{primary.key} worse by {_pct(p.rel_lift)} (p={p.p_value_adjusted:.3g})")
        if harms:
            harmed[t.key] = harms
        guards_by_variant[t.key] = guards_ok
        cons_ok = constraints[t.key]["met"]
        if _better(primary, p) and guards_ok and cons_ok:
            qualified.append((t.key, p, guard_texts))
        elif _better(primary, p):
            why = (
                "a guardrail is not shown non-inferior"
                if not guards_ok
                else "a constraint is not met"
            )
            notes.append(f"{t.key} wins on {primary.key} ({_pct(p.rel_lift)}) but {why}")

    if qualified:
        sign = 1 if primary.direction == "increase" else -1
        qualified.sort(key=lambda q: sign * q[1].rel_lift, reverse=True)
        best, row, guard_texts = qualified[0]
        stat = _evidence(a.engine, row)
        text = (
            f"{best} beats {e.control.key} on {primary.key}: {_fmt(row.control_mean)} → "
            f"{_fmt(row.variant_mean)} ({_pct(row.rel_lift)}, CI {_pct(row.rel_ci_low)} to "
            f"{_pct(row.rel_ci_high)}, {stat})"
        )
        if guard_texts:
            text += "; guardrails hold (" + "; ".join(guard_texts) + ")"
        if len(qualified) > 1:
            others = ", ".join(f"{k} ({_pct(r.rel_lift)})" for k, r, _ in qualified[1:])
            text += f"; it has the largest lift among the qualifying treatments (also: {others})"
        text += _constraint_text(e, constraints, best)
        if sample_ok and runtime_ok:
            return Recommendation(
                "ship",
                best,
                text + ". Ship it.",
                0.0,
                {**details, "qualified": [q[0] for q in qualified]},
            )
        wait = []
        if not sample_ok:
            wait.append(
                f"the smallest arm has {smallest} units of the {a.min_sample_size} required"
            )
        if not runtime_ok:
            wait.append(
                f"it has run {inp.days_since_start:.1f} of the {e.decision.min_runtime_days:g} "
                "minimum days"
            )
        # A promising treatment ships at min_sample_size and min runtime, not at the MDE sample.
        to_min = (
            max(0.0, (a.min_sample_size - smallest) / rate_per_day) if rate_per_day > 0 else None
        )
        remaining = max(to_min or 0.0, max(0.0, e.decision.min_runtime_days - inp.days_since_start))
        return Recommendation(
            "keep_running",
            best,
            text + ", but " + " and ".join(wait) + ". Keep running.",
            remaining,
            details,
        )

    budget = _constrained_choice(e, inp, constraints, guards_by_variant, by_metric)
    if budget is not None:
        best, text = budget
        if sample_ok and runtime_ok:
            return Recommendation("ship", best, text + f" Ship {best}.", 0.0, details)
        return Recommendation(
            "keep_running",
            best,
            text + " Keep running until the minimum sample and runtime are reached.",
            days_remaining,
            details,
        )

    treatments = [t.key for t in e.treatments]
    if treatments and all(k in harmed for k in treatments):
        harms_txt = "; ".join(f"{k}: {', '.join(h)}" for k, h in harmed.items())
        return Recommendation(
            "rollback",
            e.control.key,
            f"Every treatment is worse than {e.control.key}: {harms_txt}. Roll back to "
            f"{e.control.key}.",
            None,
            details,
        )

    summary = _primary_summary(e, by_metric)
    extra = ("; " + "; ".join(notes)) if notes else ""
    cons_txt = _constraint_text(e, constraints, None)
    max_days = e.decision.max_runtime_days
    planned_reached = needed is not None and smallest >= needed
    if (
        planned_reached or (max_days is not None and inp.days_since_start >= max_days)
    ) and runtime_ok:
        why = (
            f"the planned sample of {needed} units per variant is reached"
            if planned_reached
            else f"the maximum runtime of {max_days:g} days is reached"
        )
        return Recommendation(
            "stop_inconclusive",
            None,
            f"No treatment shows a significant improvement on {primary.key} and {why}: "
            f"{summary}{extra}{cons_txt}. Stop the test and keep {e.control.key}.",
            0.0,
            details,
        )
    days_txt = (
        f"about {days_remaining:.0f} more days at the current {rate_per_day:.0f} units/day "
        f"per variant to reach {target} units per variant"
        if days_remaining is not None
        else "no traffic yet to estimate the remaining time"
    )
    mde = primary.mde or DEFAULT_RELATIVE_MDE
    return Recommendation(
        "keep_running",
        None,
        f"No significant difference on {primary.key} yet: {summary}{extra}{cons_txt}. "
        f"Keep running: {days_txt} (needed to detect a {mde * 100:.0f}% relative change).",
        days_remaining,
        details,
    )


def _constrained_choice(
    e: Experiment,
    inp: DecisionInputs,
    constraints: dict[str, dict[str, Any]],
    guards_ok: dict[str, bool],
    by_metric: dict[tuple[str, str], InsightRow],
) -> tuple[str, str] | None:
    """When the control itself breaks a constraint: the best variant within the constraints."""
    cons = [m for m in e.metrics if m.role == "constraint"]
    if not cons or constraints[e.control.key]["met"]:
        return None
    feasible = [
        t.key for t in e.treatments if constraints[t.key]["met"] and guards_ok.get(t.key, True)
    ]
    if not feasible:
        return None
    primary = e.primary_metric
    sign = 1 if primary.direction == "increase" else -1
    ranked = sorted(
        (k for k in feasible if (primary.key, k) in by_metric),
        key=lambda k: sign * by_metric[(primary.key, k)].variant_mean,
        reverse=True,
    )
    if not ranked:
        return None
    best = ranked[0]
    row = by_metric[(primary.key, best)]
    broken = [
        f"{mk} {info['mean']:.4g} vs limit {_limit(info):g}"
        for mk, info in constraints[e.control.key]["metrics"].items()
        if not info.get("met") and info.get("mean") is not None
    ]
    text = (
        f"The control {e.control.key} breaks its constraint ({'; '.join(broken)}), so it is not an "
        f"option. Among variants within the constraints, {best} is best on {primary.key}: "
        f"{_fmt(row.variant_mean)} vs {_fmt(row.control_mean)} for {e.control.key} "
        f"({_pct(row.rel_lift)}, CI {_pct(row.rel_ci_low)} to {_pct(row.rel_ci_high)})."
    )
    for other in ranked[1:]:
        o = by_metric[(primary.key, other)]
        cost_bits = [
            f"{mk} {constraints[other]['metrics'][mk]['mean']:.4g} vs "
            f"{constraints[best]['metrics'][mk]['mean']:.4g}"
            for mk in constraints[other]["metrics"]
            if constraints[other]["metrics"][mk].get("mean") is not None
            and constraints[best]["metrics"].get(mk, {}).get("mean") is not None
        ]
        text += (
            f" Alternative {other}: {primary.key} {_fmt(o.variant_mean)} ({', '.join(cost_bits)})."
        )
    front = _pareto(e, inp.variant_stats)
    text += f" Pareto-optimal on {primary.key} and cost: {', '.join(front)}."
    volume = e.decision.expected_monthly_volume
    if volume:
        for mk, info in constraints[best]["metrics"].items():
            if info.get("mean") is not None:
                text += (
                    f" Projected monthly {mk} at {volume:,.0f} units: {info['mean'] * volume:,.2f}"
                    f" (upper bound {info['upper'] * volume:,.2f})."
                )
    return best, text


def _limit(info: dict[str, Any]) -> float:
    return float(info["max"] if info.get("max") is not None else info.get("min") or 0.0)


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _evidence(engine: str, r: InsightRow) -> str:
    if engine == "bayesian":
        return f"chance to beat control {r.chance_to_beat_control * 100:.1f}%"
    return f"p={r.p_value_adjusted:.3g}"


def _primary_summary(e: Experiment, by_metric: dict[tuple[str, str], InsightRow]) -> str:
    parts = []
    for t in e.treatments:
        r = by_metric.get((e.primary_metric.key, t.key))
        if r is None:
            continue
        if r.error:
            parts.append(f"{t.key} not comparable ({r.error})")
        else:
            parts.append(
                f"{t.key} {_pct(r.rel_lift)} (CI {_pct(r.rel_ci_low)} to {_pct(r.rel_ci_high)}, "
                f"{_evidence(e.analysis.engine, r)})"
            )
    return ", ".join(parts) or "no comparable data"


def _constraint_text(
    e: Experiment, constraints: dict[str, dict[str, Any]], chosen: str | None
) -> str:
    cons = [m for m in e.metrics if m.role == "constraint"]
    if not cons:
        return ""
    feasible = [k for k, v in constraints.items() if v["met"]]
    infeasible = [k for k, v in constraints.items() if not v["met"]]
    parts = []
    for k in infeasible:
        for mk, info in constraints[k]["metrics"].items():
            if not info.get("met") and info.get("mean") is not None:
                limit = info["max"] if info.get("max") is not None else info.get("min")
                parts.append(f"{k} breaks {mk} ({info['mean']:.4g} vs limit {limit:g})")
    text = "; constraints: " + (", ".join(parts) if parts else "all variants within limits")
    if feasible:
        text += f"; feasible variants: {', '.join(feasible)}"
    volume = e.decision.expected_monthly_volume
    target = chosen or (feasible[0] if feasible else None)
    if volume and target:
        for mk, info in constraints.get(target, {}).get("metrics", {}).items():
            if info.get("mean") is not None:
                text += (
                    f"; projected monthly {mk} for {target} at {volume:,.0f} units: "
                    f"{info['mean'] * volume:,.2f}"
                )
    return text


def _check_reason(c: CheckOutcome) -> str:
    if c.check_name.startswith("srm"):
        return f"sample ratio mismatch ({c.check_name}, p={c.observed:.2g} < {c.threshold:g})"
    parts = []
    if c.observed is not None:
        parts.append(f"observed {c.observed:g}")
    if c.threshold is not None and c.observed is not None:
        parts.append(f"threshold {c.threshold:g}")
    why = c.details.get("note") or c.details.get("error") if isinstance(c.details, dict) else None
    if why:
        parts.append(str(why).splitlines()[0][:200])
    return f"{c.check_name} failed" + (f" ({', '.join(parts)})" if parts else "")
