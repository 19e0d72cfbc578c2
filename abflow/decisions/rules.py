"""Decision rules: one recommendation per experiment and run, with a plain-English rationale."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from scipy import special

from abflow.decisions.plan import DEFAULT_RELATIVE_MDE, planned_sample, primary_control
from abflow.definitions import Experiment, Metric
from abflow.results import CheckOutcome, DecisionKind, InsightRow, VariantStatRow
from abflow.stats.models import ZERO_CONTROL_MEAN


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


@dataclass(frozen=True)
class GuardrailVerdict:
    """One guardrail of one treatment: does it allow shipping, is it significant harm, and why."""

    ok: bool
    harmed: bool
    text: str


def _pct(x: float) -> str:
    return f"{x * 100:+.1f}%"


def _good_sign(metric: Metric, r: InsightRow) -> bool:
    # abs_lift has the sign of the relative lift and stays defined when the control mean is 0.
    return r.abs_lift > 0 if metric.direction == "increase" else r.abs_lift < 0


def _better(metric: Metric, r: InsightRow) -> bool:
    return r.significant and r.comparable and _good_sign(metric, r)


def _worse(metric: Metric, r: InsightRow) -> bool:
    return r.significant and r.comparable and r.abs_lift != 0 and not _good_sign(metric, r)


def _lift_text(r: InsightRow) -> str:
    if r.error == ZERO_CONTROL_MEAN:
        return f"{_fmt(r.control_mean)} → {_fmt(r.variant_mean)} (absolute {r.abs_lift:+.4g})"
    return _pct(r.rel_lift)


def guardrail_ok(metric: Metric, r: InsightRow | None, alpha: float = 0.05) -> GuardrailVerdict:
    """No margin: ship unless significantly worse; a margin: the harmful bound stays within it."""
    del alpha  # the row's interval is already at the guardrail family's adjusted level
    key = metric.key
    if r is None:
        return GuardrailVerdict(False, False, f"{key} has no data, so its harm cannot be bounded")
    if not r.comparable:
        return GuardrailVerdict(
            False, False, f"{key} cannot be evaluated ({r.error}), so its harm cannot be bounded"
        )
    harmed = _worse(metric, r)
    if harmed:
        text = f"{key} significantly worse ({_lift_text(r)}, p={r.p_value_adjusted:.3g})"
        return GuardrailVerdict(False, True, text)
    margin = metric.non_inferiority_margin
    if not margin:
        return GuardrailVerdict(True, False, f"{key} not significantly worse ({_lift_text(r)})")
    if r.error == ZERO_CONTROL_MEAN:
        return GuardrailVerdict(
            False,
            False,
            f"{key} has a control mean of 0, so its relative margin of "
            f"{margin * 100:.1f}% cannot be checked",
        )
    if metric.direction == "increase":
        bound = r.rel_ci_low
        ok = bound > -margin
        text = f"{key} lower bound {_pct(bound)} vs margin -{margin * 100:.1f}%"
    else:
        bound = r.rel_ci_high
        ok = bound < margin
        text = f"{key} upper bound {_pct(bound)} vs margin +{margin * 100:.1f}%"
    return GuardrailVerdict(ok, False, text)


def constraint_status(
    experiment: Experiment, rows: list[VariantStatRow], alpha: float
) -> dict[str, dict[str, Any]]:
    """Per variant: each constraint metric's mean, its one-sided bound and whether it is met."""
    out: dict[str, dict[str, Any]] = {
        v.key: {"met": True, "metrics": {}} for v in experiment.variants
    }
    z = float(special.ndtri(1 - alpha))
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
            # quantile metrics: the variance is per observation (events, for level: event)
            se = math.sqrt(max(r.variance or 0.0, 0.0) / (r.quantile_n or r.units))
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
    """Units per variant the rule in force needs to detect the primary metric's MDE."""
    control = primary_control(experiment, rows)
    if control is None:
        return None
    return planned_sample(experiment, control.mean, control.variance)


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


@dataclass(frozen=True)
class _Treatment:
    """What the rules found for one treatment."""

    key: str
    primary: InsightRow
    better: bool
    guards: list[GuardrailVerdict]
    constraints_met: bool

    @property
    def guards_ok(self) -> bool:
        return all(g.ok for g in self.guards)

    @property
    def primary_harm(self) -> bool:
        return self.primary.significant and self.primary.comparable and not self.better

    @property
    def guard_harm(self) -> list[GuardrailVerdict]:
        return [g for g in self.guards if g.harmed]


def _rule_name(e: Experiment) -> str:
    a = e.analysis
    if not a.sequential:
        return "fixed-horizon"
    return "Bayes factor (always valid)" if a.engine == "bayesian" else "always-valid"


def decide(inp: DecisionInputs) -> Recommendation:
    """Apply the rules: investigate, ship, rollback, stop_inconclusive or keep_running."""
    e = inp.experiment
    a = e.analysis
    primary = e.primary_metric
    overall = [r for r in inp.insights if r.segment == "all"]
    by_metric: dict[tuple[str, str], InsightRow] = {
        (r.metric_key, r.variant_key): r for r in overall
    }
    details: dict[str, Any] = {
        "days_since_start": round(inp.days_since_start, 2),
        "rule": "sequential" if a.sequential else "fixed_horizon",
        "engine": a.engine,
    }

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
    planned_reached = needed is not None and smallest >= needed
    max_days = e.decision.max_runtime_days
    max_reached = max_days is not None and inp.days_since_start >= max_days
    # A fixed-horizon test is only valid at its planned sample: acting earlier is peeking.
    horizon_ok = a.sequential or planned_reached or max_reached
    ready = sample_ok and runtime_ok and horizon_ok

    constraints = constraint_status(e, inp.variant_stats, a.alpha)
    if any(m.role == "constraint" for m in e.metrics):
        details["constraints"] = constraints
        details["pareto_optimal"] = _pareto(e, inp.variant_stats)

    guardrails = [m for m in e.metrics if m.role == "guardrail"]
    found: list[_Treatment] = []
    for t in e.treatments:
        p = by_metric.get((primary.key, t.key))
        if p is None:
            continue
        guards = [guardrail_ok(g, by_metric.get((g.key, t.key))) for g in guardrails]
        found.append(_Treatment(t.key, p, _better(primary, p), guards, constraints[t.key]["met"]))
    guards_by_variant = {t.key: t.guards_ok for t in found}

    qualified = [t for t in found if t.better and t.guards_ok and t.constraints_met]
    blocked = [t for t in found if t.better and not (t.guards_ok and t.constraints_met)]
    if qualified:
        return _ship_or_wait(inp, qualified, constraints, details, ready, horizon_ok, needed)

    budget = _constrained_choice(e, inp, constraints, guards_by_variant, by_metric)
    if budget is not None:
        best, text = budget
        if ready:
            return Recommendation("ship", best, text + f" Ship {best}.", 0.0, details)
        return Recommendation(
            "keep_running",
            best,
            text + " Keep running until the minimum sample and runtime are reached.",
            days_remaining,
            details,
        )

    harmed = {t.key: t for t in found if t.primary_harm or t.guard_harm}
    treatments = [t.key for t in e.treatments]
    harm_text = "; ".join(f"{k}: {_harm_text(primary, t)}" for k, t in harmed.items())
    if treatments and all(k in harmed for k in treatments):
        kinds = {"primary" if t.primary_harm else "guardrail" for t in harmed.values()}
        lead = (
            f"Every treatment is worse than {e.control.key} on the primary metric {primary.key}"
            if kinds == {"primary"}
            else f"Every treatment harms a guardrail against {e.control.key}"
            if kinds == {"guardrail"}
            else f"Every treatment is worse than {e.control.key}"
        )
        details["harm"] = sorted(kinds)
        if ready:
            return Recommendation(
                "rollback",
                e.control.key,
                f"{lead} ({_rule_name(e)} evidence): {harm_text}. Roll back to {e.control.key}.",
                None,
                details,
            )
        wait = _wait_reasons(inp, smallest, sample_ok, runtime_ok, horizon_ok, needed)
        return Recommendation(
            "keep_running",
            None,
            f"{lead}: {harm_text}; a rollback needs the same evidence as a ship, but "
            f"{' and '.join(wait)}. Keep running.",
            _remaining(inp, smallest, rate_per_day, sample_ok, horizon_ok, needed),
            details,
        )

    summary = _primary_summary(e, by_metric)
    notes = [_blocked_text(primary, t) for t in blocked]
    if harmed:
        notes.append(f"harm seen for {harm_text} (not every treatment, so no rollback)")
    extra = ("; " + "; ".join(notes)) if notes else ""
    cons_txt = _constraint_text(e, constraints, None)
    if (planned_reached or max_reached) and runtime_ok:
        why = (
            f"the planned sample of {needed} units per variant is reached"
            if planned_reached
            else f"the maximum runtime of {max_days:g} days is reached"
        )
        lead = (
            f"{', '.join(t.key for t in blocked)} improves {primary.key} but cannot ship"
            if blocked
            else f"No treatment shows a significant improvement on {primary.key}"
        )
        return Recommendation(
            "stop_inconclusive",
            None,
            f"{lead} and {why}: {summary}{extra}{cons_txt}. Stop the test and keep "
            f"{e.control.key}.",
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
    if blocked:
        lead = f"Not shippable yet: {'; '.join(_blocked_text(primary, t) for t in blocked)}"
        extra = ("; " + "; ".join(notes[len(blocked) :])) if notes[len(blocked) :] else ""
        head = f"{lead}{extra}{cons_txt}"
    elif any(t.better for t in found) and not horizon_ok:
        head = (
            f"{primary.key} looks different ({summary}), but this is a fixed-horizon test "
            f"(sequential: false): its p-values only hold at the planned sample{extra}{cons_txt}"
        )
    else:
        head = f"No significant difference on {primary.key} yet: {summary}{extra}{cons_txt}"
    return Recommendation(
        "keep_running",
        None,
        f"{head}. Keep running: {days_txt} (the {_rule_name(e)} rule needs that many to detect a "
        f"{mde * 100:.0f}% relative change with {a.power * 100:.0f}% power).",
        days_remaining,
        details,
    )


def _harm_text(primary: Metric, t: _Treatment) -> str:
    parts = []
    if t.primary_harm:
        p = t.primary
        parts.append(f"{primary.key} worse by {_lift_text(p)} (p={p.p_value_adjusted:.3g})")
    parts.extend(f"guardrail {g.text}" for g in t.guard_harm)
    return ", ".join(parts)


def _blocked_text(primary: Metric, t: _Treatment) -> str:
    p = t.primary
    why = [g.text for g in t.guards if not g.ok]
    if not t.constraints_met:
        why.append("a constraint is not met")
    return (
        f"{t.key} is better on {primary.key} ({_lift_text(p)}, p={p.p_value_adjusted:.3g}) "
        f"but {'; '.join(why)}"
    )


def _wait_reasons(
    inp: DecisionInputs,
    smallest: int,
    sample_ok: bool,
    runtime_ok: bool,
    horizon_ok: bool,
    needed: int | None,
) -> list[str]:
    e = inp.experiment
    wait = []
    if not sample_ok:
        wait.append(
            f"the smallest arm has {smallest} units of the {e.analysis.min_sample_size} required"
        )
    if not runtime_ok:
        wait.append(
            f"it has run {inp.days_since_start:.1f} of the {e.decision.min_runtime_days:g} "
            "minimum days"
        )
    if not horizon_ok:
        wait.append(
            f"this fixed-horizon test (sequential: false) is only valid at its planned sample of "
            f"{needed} units per variant ({smallest} so far)"
        )
    return wait


def _remaining(
    inp: DecisionInputs,
    smallest: int,
    rate_per_day: float,
    sample_ok: bool,
    horizon_ok: bool,
    needed: int | None,
) -> float | None:
    """Days until the evidence may be acted on: minimum sample, runtime and (fixed) horizon."""
    e = inp.experiment
    goal = (
        e.analysis.min_sample_size if horizon_ok else max(needed or 0, e.analysis.min_sample_size)
    )
    to_sample = max(0.0, (goal - smallest) / rate_per_day) if rate_per_day > 0 else None
    if to_sample is None and not (sample_ok and horizon_ok):
        return None
    return max(to_sample or 0.0, max(0.0, e.decision.min_runtime_days - inp.days_since_start))


def _ship_or_wait(
    inp: DecisionInputs,
    qualified: list[_Treatment],
    constraints: dict[str, dict[str, Any]],
    details: dict[str, Any],
    ready: bool,
    horizon_ok: bool,
    needed: int | None,
) -> Recommendation:
    e = inp.experiment
    primary = e.primary_metric
    sign = 1 if primary.direction == "increase" else -1
    qualified = sorted(qualified, key=lambda q: sign * q.primary.abs_lift, reverse=True)
    best = qualified[0]
    row = best.primary
    text = (
        f"{best.key} beats {e.control.key} on {primary.key}: {_fmt(row.control_mean)} → "
        f"{_fmt(row.variant_mean)} ({_lift_text(row)}, CI {_pct(row.rel_ci_low)} to "
        f"{_pct(row.rel_ci_high)}, {_evidence(e, row)}, {_rule_name(e)})"
    )
    if row.impact_per_day is not None:
        low, high = 30 * (row.impact_ci_low or 0.0), 30 * (row.impact_ci_high or 0.0)
        what = "units converting" if primary.kind == "proportion" else primary.key
        text += (
            f"; at today's traffic that is {row.impact_per_day:+,.4g} {what} per day "
            f"({30 * row.impact_per_day:+,.4g} per 30 days, CI {low:+,.4g} to {high:+,.4g})"
        )
    if best.guards:
        text += "; guardrails hold (" + "; ".join(g.text for g in best.guards) + ")"
    if len(qualified) > 1:
        others = ", ".join(f"{q.key} ({_lift_text(q.primary)})" for q in qualified[1:])
        text += f"; it has the largest lift among the qualifying treatments (also: {others})"
    text += _constraint_text(e, constraints, best.key)
    if ready:
        return Recommendation(
            "ship",
            best.key,
            text + ". Ship it.",
            0.0,
            {**details, "qualified": [q.key for q in qualified]},
        )
    configured = [inp.units_by_variant.get(v.key, 0) for v in e.variants]
    smallest = min(configured) if configured else 0
    sample_ok = smallest >= e.analysis.min_sample_size
    runtime_ok = inp.days_since_start >= e.decision.min_runtime_days
    wait = _wait_reasons(inp, smallest, sample_ok, runtime_ok, horizon_ok, needed)
    rate = smallest / inp.days_since_start if inp.days_since_start > 0 else 0.0
    return Recommendation(
        "keep_running",
        best.key,
        text + ", but " + " and ".join(wait) + ". Keep running.",
        _remaining(inp, smallest, rate, sample_ok, horizon_ok, needed),
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


def _evidence(e: Experiment, r: InsightRow) -> str:
    a = e.analysis
    if a.engine == "bayesian":
        text = f"chance to beat control {r.chance_to_beat_control * 100:.1f}%"
        if a.sequential:
            bf = 1.0 / max(r.p_value_adjusted, 1e-300)
            text += f", Bayes factor {bf:.3g} (needs ≥ {1 / a.alpha:g})"
        return text
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
                f"{_evidence(e, r)})"
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
