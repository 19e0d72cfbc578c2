"""Self-contained HTML report of one experiment: inline CSS and hand-drawn SVG, no scripts."""

from __future__ import annotations

import html
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from markupsafe import Markup

from abflow.alerting.validation import describe as describe_check
from abflow.alerting.validation import unexpected_count
from abflow.definitions import Experiment, Metric
from abflow.summary import bandit_history, describe_pin

Row = dict[str, Any]

GOOD, BAD, NEUTRAL, WARN = "#15803d", "#b91c1c", "#6b7280", "#b45309"
SERIES = ("#2563eb", "#d97706", "#7c3aed", "#0d9488", "#db2777", "#4b5563")
DECISIONS = {
    "ship": ("Ship", GOOD),
    "keep_running": ("Keep running", "#1d4ed8"),
    "stop_inconclusive": ("Stop — inconclusive", NEUTRAL),
    "rollback": ("Roll back", BAD),
    "investigate": ("Investigate", WARN),
}
ROLE_ORDER = {"primary": 0, "guardrail": 1, "constraint": 2, "secondary": 3}

def _e(value: Any) -> str:
    """Escape anything for HTML text and attributes (keys and names are user input)."""
    return html.escape("" if value is None else str(value), quote=True)


def _f(value: Any) -> float | None:
    """A finite float or None (NaN/inf and non-numbers become None)."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def pct(value: Any, digits: int = 1) -> str:
    """Signed percentage of a fraction, e.g. 0.1843 -> '+18.4%'."""
    x = _f(value)
    if x is None:
        return "—"
    scaled = x * 100
    # Tiny effects get two more decimals instead of a misleading '+0.0%'.
    places = digits if scaled == 0 or abs(scaled) >= 10 ** -digits else digits + 2
    return f"{scaled:+.{places}f}%"


def num(value: Any) -> str:
    """A mean or count with four significant digits, thousands separated when large."""
    x = _f(value)
    if x is None:
        return "—"
    if abs(x) >= 10000:
        return f"{x:,.0f}"
    return f"{x:.4g}"


def p_fmt(value: Any) -> str:
    """A p-value: four decimals, '<0.0001' below that."""
    x = _f(value)
    if x is None:
        return "—"
    return "<0.0001" if x < 1e-4 else f"{x:.4f}"


def _date(value: Any, fmt: str = "%Y-%m-%d %H:%M UTC") -> str:
    """A datetime in UTC, or the value as text."""
    if isinstance(value, datetime):
        dt = value.astimezone(UTC) if value.tzinfo else value
        return dt.strftime(fmt)
    return "—" if value is None else str(value)


format_date = _date  # public for the shared templates' `date` filter



def _metric(experiment: Experiment, key: str) -> Metric | None:
    """The metric definition, or None when the definition no longer has it."""
    return next((m for m in experiment.metrics if m.key == key), None)


def _direction(experiment: Experiment, key: str) -> str:
    """'increase' or 'decrease': which way is better for this metric."""
    m = _metric(experiment, key)
    return m.direction if m else "increase"


def verdict(experiment: Experiment, row: Row) -> str:
    """'good', 'bad', 'neutral' or 'error' for one insight, aware of the metric's direction."""
    if row.get("error"):
        return "error"
    lift = _f(row.get("rel_lift"))
    if not row.get("significant") or lift is None or lift == 0:
        return "neutral"
    better = lift > 0 if _direction(experiment, row["metric_key"]) == "increase" else lift < 0
    return "good" if better else "bad"


def _colour(v: str) -> str:
    """Colour for a verdict."""
    return {"good": GOOD, "bad": BAD, "error": WARN}.get(v, NEUTRAL)


def _metric_order(experiment: Experiment) -> dict[str, int]:
    """Sort rank of metric keys: primary first, then guardrails, constraints, secondaries."""
    ranked = sorted(
        enumerate(experiment.metrics), key=lambda im: (ROLE_ORDER.get(im[1].role, 9), im[0])
    )
    return {m.key: rank for rank, (_, m) in enumerate(ranked)}


def _sorted_insights(experiment: Experiment, rows: Iterable[Row]) -> list[Row]:
    """Insights in display order: metric rank, then variant definition order, then segment."""
    order = _metric_order(experiment)
    variants = {v.key: i for i, v in enumerate(experiment.variants)}
    return sorted(
        rows,
        key=lambda r: (
            order.get(r.get("metric_key", ""), 99), r.get("metric_key", ""),
            variants.get(r.get("variant_key", ""), 99), r.get("variant_key", ""),
            str(r.get("segment", "")),
        ),
    )


def _variant_colours(experiment: Experiment, rows: Iterable[Row]) -> dict[str, str]:
    """A stable colour per treatment: definition order first, unknown keys after."""
    keys = [v.key for v in experiment.treatments]
    keys += sorted({r["variant_key"] for r in rows} - set(keys))
    return {k: SERIES[i % len(SERIES)] for i, k in enumerate(keys)}


# scales and ticks ---------------------------------------------------------------------------


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (1-2-5 steps)."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(1, count)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks, t = [], start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 10))
        t += step
    return ticks


@dataclass(frozen=True)
class Scale:
    """Linear map from a data range to a pixel range."""

    d0: float
    d1: float
    p0: float
    p1: float

    def __call__(self, x: float) -> float:
        """Pixel position of a data value."""
        span = self.d1 - self.d0 or 1.0
        return self.p0 + (x - self.d0) / span * (self.p1 - self.p0)


def _padded(values: Sequence[float], *, include_zero: bool = True) -> tuple[float, float]:
    """A range around the values with 8% padding, always containing zero."""
    vals = [*values, 0.0] if include_zero else list(values)
    lo, hi = min(vals), max(vals)
    pad = (hi - lo) * 0.08 or 0.05
    return lo - pad, hi + pad


def _tick_label(value: float) -> str:
    """Axis label of a percentage value."""
    return f"{value:+g}%" if value else "0%"


# charts --------------------------------------------------------------------------------------


def _svg_text(x: float, y: float, text: str, **attrs: Any) -> str:
    """An SVG text element with escaped content."""
    extra = " ".join(f'{k.replace("_", "-")}="{_e(v)}"' for k, v in attrs.items())
    return f'<text x="{x:.1f}" y="{y:.1f}" {extra}>{_e(text)}</text>'


def forest_plot(experiment: Experiment, insights: list[Row]) -> str:
    """SVG forest plot: relative lift and CI per metric and treatment, coloured by verdict."""
    rows = [r for r in _sorted_insights(experiment, insights) if r.get("segment", "all") == "all"]
    if not rows:
        return '<p class="empty">No metric results in the latest run.</p>'
    ok = [r for r in rows if not r.get("error")]
    bounds = [
        100 * v for r in ok for v in (_f(r["rel_ci_low"]), _f(r["rel_ci_high"])) if v is not None
    ]
    # Clamp so one metric with a huge interval does not squash every other row.
    lo, hi = _padded([max(-150.0, min(150.0, b)) for b in bounds] or [0.0])
    width, left, right, row_h, top = 1160, 300, 230, 34, 30
    height = top + row_h * len(rows) + 34
    x = Scale(lo, hi, left, width - right)
    parts = [f'<svg class="forest" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="Forest plot of relative lifts">']
    parts += _forest_grid(x, lo, hi, top, height - 28)
    for i, r in enumerate(rows):
        parts += _forest_row(experiment, r, x, top + i * row_h, row_h, width, lo, hi)
    parts.append(_svg_text(left, 16, "relative lift vs control (95% CI)", font_size=12,
                           fill="#4b5563"))
    parts.append("</svg>")
    return "".join(parts)


def _forest_grid(x: Scale, lo: float, hi: float, top: float, bottom: float) -> list[str]:
    """Vertical grid lines with percentage labels and a bold zero line."""
    out = []
    for t in nice_ticks(lo, hi, 8):
        if not lo <= t <= hi:
            continue
        stroke = "#111827" if t == 0 else "#e5e7eb"
        sw = 1.5 if t == 0 else 1
        out.append(f'<line x1="{x(t):.1f}" y1="{top - 4}" x2="{x(t):.1f}" y2="{bottom}" '
                   f'stroke="{stroke}" stroke-width="{sw}"/>')
        out.append(_svg_text(x(t), bottom + 16, _tick_label(t), font_size=11,
                             text_anchor="middle", fill="#6b7280"))
    return out


def _forest_row(
    experiment: Experiment, r: Row, x: Scale, y0: float, h: float, width: float,
    lo: float, hi: float,
) -> list[str]:
    """One forest-plot row: label, CI bar, point estimate and the numbers."""
    cy = y0 + h / 2
    primary = r.get("metric_role") == "primary"
    out = []
    if primary:
        out.append(f'<rect x="0" y="{y0:.1f}" width="{width}" height="{h}" fill="#eff6ff"/>')
    weight = "700" if primary else "500"
    label = f'{r["metric_key"]} · {r["variant_key"]}'
    out.append(_svg_text(8, cy - 1, label, font_size=13, font_weight=weight, fill="#111827"))
    better = "lower is better" if _direction(experiment, r["metric_key"]) == "decrease" else ""
    sub = " · ".join(s for s in (str(r.get("metric_role", "")).upper(), better) if s)
    out.append(_svg_text(8, cy + 13, sub, font_size=10, fill="#6b7280"))
    v = verdict(experiment, r)
    colour = _colour(v)
    if v == "error":
        out.append(_svg_text(x((lo + hi) / 2), cy + 4, f'not computed: {r["error"]}',
                             font_size=12, text_anchor="middle", fill=WARN))
        return out
    lift, cl, ch = (100 * (_f(r[k]) or 0.0) for k in ("rel_lift", "rel_ci_low", "rel_ci_high"))
    a, b = x(max(lo, cl)), x(min(hi, ch))
    out.append(f'<line x1="{a:.1f}" y1="{cy:.1f}" x2="{b:.1f}" y2="{cy:.1f}" stroke="{colour}" '
               f'stroke-width="5" stroke-linecap="round" opacity="0.45"/>')
    px = x(max(lo, min(hi, lift)))
    out.append(f'<circle cx="{px:.1f}" cy="{cy:.1f}" r="{7 if primary else 5.5}" '
               f'fill="{colour}" stroke="#fff" stroke-width="1.5"/>')
    text = f'{pct(r["rel_lift"])}  [{pct(r["rel_ci_low"])}, {pct(r["rel_ci_high"])}]'
    out.append(_svg_text(width - 222, cy + 4, text, font_size=12, font_weight=weight,
                         fill=colour))
    return out


def _series(history: list[Row], metric_key: str) -> dict[str, list[Row]]:
    """Overall-segment history rows of one metric, per treatment, in time order."""
    out: dict[str, list[Row]] = defaultdict(list)
    for r in history:
        if r.get("metric_key") == metric_key and r.get("segment", "all") == "all" \
                and not r.get("error") and isinstance(r.get("as_of"), datetime):
            out[r["variant_key"]].append(r)
    for rows in out.values():
        rows.sort(key=lambda r: r["as_of"])
    return dict(out)


def _time_range(series: dict[str, list[Row]]) -> tuple[float, float]:
    """First and last as_of as epoch seconds, widened by a day when there is a single date."""
    stamps = [r["as_of"].timestamp() for rows in series.values() for r in rows]
    lo, hi = min(stamps), max(stamps)
    return (lo - 43200, hi + 43200) if hi == lo else (lo, hi)


def _y_range(series: dict[str, list[Row]]) -> tuple[float, float]:
    """Y range from the lifts and the later half of the CI bands (early bands are clipped)."""
    vals: list[float] = []
    for rows in series.values():
        late = rows[len(rows) // 2:]
        vals += [100 * (_f(r["rel_lift"]) or 0.0) for r in rows]
        vals += [100 * (_f(r[k]) or 0.0) for r in late for k in ("rel_ci_low", "rel_ci_high")]
    return _padded(vals)


def lift_chart(experiment: Experiment, metric_key: str, history: list[Row], idx: int) -> str:
    """SVG chart of cumulative relative lift over as_of: a line and CI band per treatment."""
    series = _series(history, metric_key)
    if not series:
        return '<p class="empty">No history for this metric yet.</p>'
    colours = _variant_colours(experiment, history)
    width, height, ml, mr, mt, mb = 560, 250, 52, 16, 14, 34
    t0, t1 = _time_range(series)
    y0, y1 = _y_range(series)
    x = Scale(t0, t1, ml, width - mr)
    y = Scale(y0, y1, height - mb, mt)
    clip = f"clip{idx}"
    parts = [f'<svg class="lift" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="Relative lift over time for {_e(metric_key)}">',
             f'<defs><clipPath id="{clip}"><rect x="{ml}" y="{mt}" width="{width - ml - mr}" '
             f'height="{height - mt - mb}"/></clipPath></defs>']
    parts += _better_zones(experiment, metric_key, x, y, y0, y1)
    parts += _y_axis(y, y0, y1, ml, width - mr)
    parts += _x_axis(series, x, height - mb)
    for key, rows in series.items():
        parts += _band_and_line(rows, x, y, colours.get(key, NEUTRAL), clip)
    parts.append("</svg>")
    return "".join(parts)


def _better_zones(
    experiment: Experiment, metric_key: str, x: Scale, y: Scale, y0: float, y1: float
) -> list[str]:
    """Light green tint on the side of zero that is better, light red on the worse side."""
    up_good = _direction(experiment, metric_key) == "increase"
    zero = y(0.0)
    top_c, bot_c = ("#f0fdf4", "#fef2f2") if up_good else ("#fef2f2", "#f0fdf4")
    out = [
        f'<rect x="{x.p0}" y="{y.p1}" width="{x.p1 - x.p0}" height="{max(0.0, zero - y.p1):.1f}" '
        f'fill="{top_c}"/>',
        f'<rect x="{x.p0}" y="{zero:.1f}" width="{x.p1 - x.p0}" '
        f'height="{max(0.0, y.p0 - zero):.1f}" fill="{bot_c}"/>',
    ]
    if y1 > 0:
        out.append(_svg_text(x.p0 + 6, y.p1 + 12, "▲ better" if up_good else "▲ worse",
                             font_size=10, fill=GOOD if up_good else BAD))
    if y0 < 0:
        out.append(_svg_text(x.p0 + 6, y.p0 - 5, "▼ worse" if up_good else "▼ better",
                             font_size=10, fill=BAD if up_good else GOOD))
    return out


def _y_axis(y: Scale, y0: float, y1: float, left: float, right: float) -> list[str]:
    """Horizontal grid lines with percentage labels and a dashed zero line."""
    out = []
    for t in nice_ticks(y0, y1, 5):
        if not y0 <= t <= y1:
            continue
        dash = ' stroke-dasharray="5 3"' if t == 0 else ""
        stroke, sw = ("#111827", 1.3) if t == 0 else ("#e5e7eb", 1)
        out.append(f'<line x1="{left}" y1="{y(t):.1f}" x2="{right}" y2="{y(t):.1f}" '
                   f'stroke="{stroke}" stroke-width="{sw}"{dash}/>')
        out.append(_svg_text(left - 6, y(t) + 4, _tick_label(t), font_size=10,
                             text_anchor="end", fill="#6b7280"))
    return out


def _x_axis(series: dict[str, list[Row]], x: Scale, base: float) -> list[str]:
    """Date labels under the plot, thinned to at most seven."""
    dates = sorted({r["as_of"] for rows in series.values() for r in rows})
    step = max(1, math.ceil(len(dates) / 7))
    shown = dates[::step]
    if dates[-1] not in shown:
        shown = [*shown[:-1], dates[-1]] if len(shown) > 1 and step > 1 else [*shown, dates[-1]]
    out = [f'<line x1="{x.p0}" y1="{base}" x2="{x.p1}" y2="{base}" stroke="#9ca3af"/>']
    for d in shown:
        px = x(d.timestamp())
        out.append(f'<line x1="{px:.1f}" y1="{base}" x2="{px:.1f}" y2="{base + 4}" '
                   f'stroke="#9ca3af"/>')
        out.append(_svg_text(px, base + 17, _date(d, "%b %d"), font_size=10,
                             text_anchor="middle", fill="#6b7280"))
    return out


def _band_and_line(rows: list[Row], x: Scale, y: Scale, colour: str, clip: str) -> list[str]:
    """Shaded CI band, the lift line, and points (filled when significant)."""
    pts = [(x(r["as_of"].timestamp()), r) for r in rows]
    upper = [f"{px:.1f},{y(100 * (_f(r['rel_ci_high']) or 0.0)):.1f}" for px, r in pts]
    lower = [f"{px:.1f},{y(100 * (_f(r['rel_ci_low']) or 0.0)):.1f}" for px, r in reversed(pts)]
    line = [f"{px:.1f},{y(100 * (_f(r['rel_lift']) or 0.0)):.1f}" for px, r in pts]
    out = [f'<g clip-path="url(#{clip})">']
    if len(pts) > 1:
        out.append(f'<polygon points="{" ".join(upper + lower)}" fill="{colour}" '
                   f'fill-opacity="0.16" stroke="none"/>')
        out.append(f'<polyline points="{" ".join(line)}" fill="none" stroke="{colour}" '
                   f'stroke-width="2.2"/>')
    else:
        px, r = pts[0]
        hi_y, lo_y = (y(100 * (_f(r[k]) or 0.0)) for k in ("rel_ci_high", "rel_ci_low"))
        out.append(f'<line x1="{px:.1f}" y1="{hi_y:.1f}" x2="{px:.1f}" y2="{lo_y:.1f}" '
                   f'stroke="{colour}" stroke-width="8" stroke-opacity="0.25"/>')
    for px, r in pts:
        fill = colour if r.get("significant") else "#fff"
        out.append(f'<circle cx="{px:.1f}" cy="{y(100 * (_f(r["rel_lift"]) or 0.0)):.1f}" r="3" '
                   f'fill="{fill}" stroke="{colour}" stroke-width="1.5"/>')
    out.append("</g>")
    return out


# sections ------------------------------------------------------------------------------------


def _header(experiment: Experiment, latest: Row) -> str:
    """Name, hypothesis, status, as_of and units per variant."""
    run = latest.get("run") or {}
    units: dict[str, Any] = latest.get("units") or {}
    total = sum(int(u or 0) for u in units.values())
    status_colour = {"succeeded": GOOD, "unhealthy": WARN, "failed": BAD}.get(
        str(run.get("status")), NEUTRAL)
    days = _f(run.get("days_since_start"))
    cards = []
    for v in experiment.variants:
        n = int(units.get(v.key) or 0)
        share = f"{n / total:.1%} of units" if total else "no units"
        tag = " (control)" if v.control else ""
        cards.append(
            f'<div class="unit"><div class="muted small">{_e(v.key)}{tag}</div>'
            f'<div class="n">{n:,}</div><div class="muted small">{share} · '
            f'target {v.weight:.0%}</div></div>'
        )
    for key in sorted(set(units) - {v.key for v in experiment.variants}):
        cards.append(f'<div class="unit"><div class="muted small">{_e(key)} (unknown)</div>'
                     f'<div class="n">{int(units[key] or 0):,}</div></div>')
    message = run.get("message")
    msg = (f'<div class="small" style="margin-top:6px">Run message: {_e(message)}</div>'
           if message and run.get("status") != "succeeded" else "")
    failed = latest.get("failed_newer")
    if failed:
        msg += (f'<div class="small fail" style="margin-top:6px" data-failed-newer>The newest run, '
                f'as of {_e(_date(failed.get("as_of")))}, failed: {_e(failed.get("message"))}. '
                f'Shown here (and to apps) is the newest run that did not fail.</div>')
    return (
        f'<section class="card"><div class="muted small">A/B test report · '
        f'<code>{_e(experiment.key)}</code></div><h1>{_e(experiment.name)}</h1>'
        f'<p class="hyp">{_e(experiment.hypothesis or "No hypothesis given.")}</p>'
        f'<div class="meta"><span>Experiment <span class="pill">{_e(experiment.status)}</span>'
        f'</span><span>Latest run <span class="pill" style="background:{status_colour}">'
        f'{_e(run.get("status", "none"))}</span></span>'
        f'<span>Data as of <b>{_e(_date(run.get("as_of")))}</b></span>'
        f'<span>Running <b>{"—" if days is None else f"{days:.1f}"}</b> days</span>'
        f'<span>Total units <b>{total:,}</b></span>'
        f'<span>Engine <b>{_e(experiment.analysis.engine)}</b>, α = '
        f'{experiment.analysis.alpha:g}</span></div>'
        f'<div class="units">{"".join(cards)}</div>{msg}</section>'
    )


def _recommendation(experiment: Experiment, latest: Row) -> str:
    """Decision badge, rationale and days remaining, with the key numbers beneath."""
    rec = latest.get("recommendation")
    kpis = _kpis(experiment, latest)
    if not rec:
        return ('<section class="card"><h2>Recommendation</h2><p class="empty">No recommendation '
                f'for the latest run (it may have failed or been skipped).</p>{kpis}</section>')
    decision = str(rec.get("decision", ""))
    label, colour = DECISIONS.get(decision, (decision, NEUTRAL))
    variant = rec.get("variant_key")
    days = _f(rec.get("days_remaining"))
    days_txt = "—" if days is None else ("none" if days <= 0 else f"about {math.ceil(days)}")
    promo = _config_note(latest.get("config"))
    return (
        f'<section class="card" data-decision="{_e(decision)}"><h2>Recommendation</h2>'
        f'<div class="rec"><div class="badge" style="background:{colour}">'
        f'<div class="d">{_e(label)}</div>'
        f'<div class="v">{_e(variant) if variant else "&nbsp;"}</div></div>'
        f'<div><p class="rationale">{_e(rec.get("rationale", ""))}</p>'
        f'<div class="muted">Decision code <code>{_e(decision)}</code> · days remaining: '
        f'<b>{days_txt}</b>{promo}</div></div></div>{kpis}</section>'
    )


def _config_note(cfg: Row | None) -> str:
    """What apps are served (version, promoted variant or weighted split) and who pinned it."""
    if not cfg:
        return ""
    promoted = cfg.get("promoted_variant_key")
    served = (f'promoted variant in config: <b>{_e(promoted)}</b>' if promoted
              else "config: weighted split")
    pin = describe_pin(cfg)
    owner = (f' · <span class="warn" data-pin>{_e(pin)}</span> (runs leave it alone until '
             f'<code>abflow unpin</code>)' if pin else " · decision rules in control")
    return f" · {served} (v{_e(cfg.get('version'))}){owner}"


def _headline_row(experiment: Experiment, latest: Row) -> Row | None:
    """The primary-metric insight to headline: the recommended variant's, else the best one."""
    rows = [r for r in latest.get("insights") or [] if r.get("metric_role") == "primary"
            and r.get("segment", "all") == "all" and not r.get("error")]
    if not rows:
        return None
    chosen = (latest.get("recommendation") or {}).get("variant_key")
    for r in rows:
        if r.get("variant_key") == chosen:
            return r
    sign = 1 if experiment.primary_metric.direction == "increase" else -1
    return max(rows, key=lambda r: sign * (_f(r.get("rel_lift")) or 0.0))


def _kpi(title: str, value: str, sub: str, colour: str = "#111827", extra: str = "") -> str:
    """One key-number tile (value and sub are already escaped HTML)."""
    return (f'<div class="kpi"><div class="t">{_e(title)}</div>'
            f'<div class="n" style="color:{colour}">{value}</div>'
            f'<div class="muted small">{sub}</div>{extra}</div>')


def _kpis(experiment: Experiment, latest: Row) -> str:
    """Primary lift, chance to beat control, health and sample progress as tiles."""
    tiles = []
    row = _headline_row(experiment, latest)
    if row is not None:
        colour = _colour(verdict(experiment, row))
        tiles.append(_kpi(
            f"Primary metric · {row['metric_key']}", pct(row.get("rel_lift")),
            f'{_e(row.get("variant_key"))} vs {_e(row.get("control_key"))} · 95% CI '
            f'{pct(row.get("rel_ci_low"))} to {pct(row.get("rel_ci_high"))}', colour))
        ctb = _f(row.get("chance_to_beat_control"))
        tiles.append(_kpi(
            "Chance to beat control", "—" if ctb is None else f"{ctb:.1%}",
            f'p = {p_fmt(row.get("p_value_adjusted"))} · '
            f'{"significant" if row.get("significant") else "not significant"}'))
    checks = latest.get("checks") or []
    crit = [c for c in checks if not c.get("passed") and c.get("severity") == "critical"]
    warn = [c for c in checks if not c.get("passed") and c.get("severity") != "critical"]
    if checks:
        value, colour = (("✗ failing", BAD) if crit else ("⚠ warnings", WARN) if warn
                         else ("✓ healthy", GOOD))
        names = ", ".join(str(c.get("check_name")) for c in [*crit, *warn][:3])
        sub = _e(names) if names else f"all {len(checks)} checks passed (SRM p-values etc.)"
        tiles.append(_kpi("Health", value, sub, colour))
    tiles.append(_sample_kpi(experiment, latest))
    return f'<div class="kpis">{"".join(tiles)}</div>'


def _sample_kpi(experiment: Experiment, latest: Row) -> str:
    """Smallest arm's units against the planned sample per variant, with a progress bar."""
    details = (latest.get("recommendation") or {}).get("details") or {}
    units = [int(u or 0) for u in (latest.get("units") or {}).values()]
    smallest = int(details.get("units_per_variant_min") or (min(units) if units else 0))
    needed = _f(details.get("required_per_variant")) or float(experiment.analysis.min_sample_size)
    share = min(1.0, smallest / needed) if needed else 1.0
    bar = f'<div class="bar"><i style="width:{share * 100:.0f}%"></i></div>'
    return _kpi("Sample per variant (smallest arm)", f"{smallest:,}",
                f"{share:.0%} of the {needed:,.0f} planned for the MDE", extra=bar)


def _forest_section(experiment: Experiment, latest: Row) -> str:
    """The forest plot card with its legend."""
    legend = (
        f'<div class="legend"><span><i class="sw" style="background:{GOOD}"></i>significant, '
        f'better</span><span><i class="sw" style="background:{BAD}"></i>significant, worse</span>'
        f'<span><i class="sw" style="background:{NEUTRAL}"></i>not significant</span>'
        '<span>blue row = primary metric</span><span>"better" respects each metric\'s '
        'direction</span></div>'
    )
    return (f'<section class="card"><h2>All metrics at a glance (latest run)</h2>'
            f'{forest_plot(experiment, latest.get("insights") or [])}{legend}</section>')


def _lift_section(experiment: Experiment, history: list[Row]) -> str:
    """One lift-over-time chart per metric, primary first."""
    keys = [m.key for m in experiment.metrics]
    keys += sorted({str(r.get("metric_key")) for r in history} - set(keys))
    order = _metric_order(experiment)
    keys.sort(key=lambda k: order.get(k, 99))
    colours = _variant_colours(experiment, history)
    legend = "".join(f'<span><i class="sw" style="background:{c}"></i>{_e(k)} vs '
                     f'{_e(experiment.control.key)}</span>' for k, c in colours.items())
    cards = []
    for i, key in enumerate(keys):
        m = _metric(experiment, key)
        role = m.role if m else "unknown"
        hint = "lower is better" if m and m.direction == "decrease" else "higher is better"
        cards.append(
            f'<div class="card"><h3>{_e(key)} <span class="muted small">· {_e(role)} · '
            f'{hint}</span></h3>{lift_chart(experiment, key, history, i)}</div>'
        )
    return (
        '<section class="card"><h2>Cumulative relative lift over time</h2>'
        f'<div class="legend" style="margin-bottom:10px">{legend}<span>band = 95% CI · ● '
        'significant ○ not</span></div>'
        f'<div class="grid2">{"".join(cards)}</div></section>'
    )


def exposure_age_section(experiment: Experiment, latest: Row) -> str:
    """Relative lift by days since first exposure per metric (lift_by_exposure_age), or ''."""
    from abflow.reporting import render

    rows = [r for r in latest.get("exposure_age") or [] if r.get("metric_key")]
    if not rows:
        return ""
    colours = _variant_colours(experiment, rows)
    order = _metric_order(experiment)
    charts = [
        _cohort_chart(experiment, key, [r for r in rows if r["metric_key"] == key], colours)
        for key in sorted({str(r["metric_key"]) for r in rows}, key=lambda k: order.get(k, 99))
    ]
    check = next(
        (c for c in latest.get("checks") or [] if c.get("check_name") == "novelty_effect"), None
    )
    note = (check.get("details") or {}).get("note", "") if check else ""
    return render(
        "exposure_age.html.j2",
        charts=charts,
        legend=[{"key": k, "colour": c} for k, c in colours.items()],
        control=experiment.control.key,
        check=None
        if check is None
        else {
            "passed": bool(check.get("passed")),
            "note": note,
            "observed": check.get("observed"),
            "threshold": check.get("threshold"),
        },
    )


def _cohort_chart(
    experiment: Experiment, key: str, rows: list[Row], colours: dict[str, str]
) -> dict[str, Any]:
    """Geometry of one metric's cohort chart: a point and 95% CI per treatment and cohort."""
    from abflow.cohorts import COHORTS

    width, height, left, right, top, base = 560, 250, 56, 540, 14, 206
    ok = [r for r in rows if r.get("rel_lift") is not None]
    bounds = [
        100 * v for r in ok for v in (_f(r["rel_ci_low"]), _f(r["rel_ci_high"])) if v is not None
    ]
    lo, hi = _padded([max(-150.0, min(150.0, b)) for b in bounds] or [0.0])
    y = Scale(lo, hi, base, top)
    slot = (right - left) / len(COHORTS)
    variants = list(colours)
    step = slot / (len(variants) + 1)
    cohorts, points = [], []
    for i, (label, _, _) in enumerate(COHORTS):
        in_cohort = [r for r in rows if r.get("cohort") == label]
        units = ", ".join(
            f"{int(r['control_units']):,} / {int(r['variant_units']):,}" for r in in_cohort
        )
        cohorts.append({"x": round(left + slot * (i + 0.5), 1), "label": label, "units": units})
        for r in in_cohort:
            j = variants.index(r["variant_key"]) if r["variant_key"] in variants else 0
            x = round(left + slot * i + step * (j + 1), 1)
            if r.get("rel_lift") is None:
                points.append({"x": x, "error": r.get("error") or "not computed"})
                continue
            lift, low, high = (_f(r[k]) or 0.0 for k in ("rel_lift", "rel_ci_low", "rel_ci_high"))
            clamp = lambda v: y(max(lo, min(hi, 100 * v)))  # noqa: E731
            points.append(
                {
                    "x": x,
                    "y": round(clamp(lift), 1),
                    "y_low": round(clamp(low), 1),
                    "y_high": round(clamp(high), 1),
                    "colour": colours.get(r["variant_key"], SERIES[0]),
                    "variant": r["variant_key"],
                    "cohort": label,
                    "lift": lift,
                    "low": low,
                    "high": high,
                    "p_value": r.get("p_value"),
                    "error": None,
                }
            )
    m = _metric(experiment, key)
    return {
        "metric_key": key,
        "role": m.role if m else "unknown",
        "hint": "lower is better" if m and m.direction == "decrease" else "higher is better",
        "width": width,
        "height": height,
        "left": left,
        "right": right,
        "base": base,
        "zero_y": round(y(0.0), 1),
        "ticks": [
            {"y": round(y(t), 1), "label": _tick_label(t), "zero": t == 0}
            for t in nice_ticks(lo, hi, 5)
            if lo <= t <= hi
        ],
        "cohorts": cohorts,
        "points": points,
    }


def _check_sample(details: Any) -> str:
    """The most useful detail of a check: a sample of offending units, counts or a note."""
    if not isinstance(details, dict):
        return ""
    if details.get("sample"):
        return "e.g. " + ", ".join(map(str, list(details["sample"])[:5]))
    if isinstance(details.get("counts"), dict):
        exp = details.get("expected") or {}
        counts = details["counts"].items()
        return ", ".join(f"{k} {v:,} (exp. {num(exp.get(k))})" for k, v in counts)
    if isinstance(details.get("units_by_variant"), dict) and details["units_by_variant"]:
        return ", ".join(f"{k} {v:,}" for k, v in details["units_by_variant"].items())
    return str(details.get("note") or "")


def _health_section(latest: Row) -> str:
    """SRM and other health checks, failures first, with a one-line summary."""
    checks = sorted(
        latest.get("checks") or [],
        key=lambda c: (bool(c.get("passed")), c.get("severity") != "critical",
                       str(c.get("check_name"))),
    )
    if not checks:
        return ('<section class="card health"><h2>Health checks</h2>'
                '<p class="empty">No health checks recorded for the latest run.</p></section>')
    crit = sum(1 for c in checks if not c.get("passed") and c.get("severity") == "critical")
    warn = sum(1 for c in checks if not c.get("passed") and c.get("severity") != "critical")
    summary = (
        f'<p class="ok"><b>✓ All {len(checks)} checks passed</b> — randomisation and data look '
        'healthy.</p>' if not crit and not warn else
        f'<p><span class="fail">{crit} critical failure(s)</span> · '
        f'<span class="warn">{warn} warning(s)</span> of {len(checks)} checks.</p>'
    )
    rows = "".join(_check_row(c) for c in checks)
    return (
        f'<section class="card health"><h2>Health checks and data validation (SRM, exposure, '
        'sample, traffic, Great Expectations)</h2>'
        f'{summary}<div class="scroll"><table><tr><th class="l">check</th>'
        '<th class="l">severity</th><th>result</th>'
        f'<th>observed</th><th>threshold</th><th class="l">sample / details</th></tr>{rows}'
        '</table></div></section>'
    )


def _check_row(c: Row) -> str:
    """One health-check table row."""
    if c.get("passed"):
        result = '<span class="ok">✓ passed</span>'
    elif c.get("severity") == "critical":
        result = '<span class="fail">✗ FAILED</span>'
    else:
        result = '<span class="warn">⚠ warning</span>'
    # What was checked and how many rows broke it (GX expectations), from the stored row.
    checked = describe_check(str(c.get("check_name")), c.get("details"))
    bad = unexpected_count(c.get("details"))
    detail = _check_sample(c.get("details"))
    if bad is not None:
        detail = f"{bad:,} unexpected row(s)" + (f"; {detail}" if detail else "")
    if isinstance(c.get("details"), dict) and c["details"].get("error"):
        detail = f"error: {c['details']['error']}"
    return (
        f'<tr><td class="l">{_e(c.get("check_name"))}<div class="muted small">{_e(checked)}'
        f'</div></td><td class="l">{_e(c.get("severity"))}'
        f'</td><td>{result}</td><td>{num(c.get("observed"))}</td><td>{num(c.get("threshold"))}'
        f'</td><td class="l wrap small">{_e(detail)}</td></tr>'
    )


def _lift_cell(experiment: Experiment, r: Row, key: str, fmt: Any) -> str:
    """A lift with its CI, coloured by verdict."""
    v = verdict(experiment, r)
    cls = {"good": "good", "bad": "bad"}.get(v, "")
    return (f'<td class="{cls}">{fmt(r.get(key))}<div class="ci">'
            f'[{fmt(r.get(key.replace("lift", "ci_low")))}, '
            f'{fmt(r.get(key.replace("lift", "ci_high")))}]</div></td>')


def _abs(value: Any) -> str:
    """An absolute lift with its sign."""
    x = _f(value)
    return "—" if x is None else f"{x:+.4g}"


def _result_row(experiment: Experiment, r: Row, *, segment: bool = False) -> str:
    """One results-table row (optionally with the segment column)."""
    primary = ' class="primary"' if r.get("metric_role") == "primary" else ""
    if r.get("error"):
        span = 5 if segment else 6
        body = f'<td class="l err wrap" colspan="{span}">not computed: {_e(r["error"])}</td>'
    else:
        ctb = _f(r.get("chance_to_beat_control"))
        abs_cell = "" if segment else _lift_cell(experiment, r, "abs_lift", _abs)
        body = (
            f'{abs_cell}'
            f'{_lift_cell(experiment, r, "rel_lift", pct)}'
            f'<td>{p_fmt(r.get("p_value"))}</td><td>{p_fmt(r.get("p_value_adjusted"))}</td>'
            f'<td>{"—" if ctb is None else f"{ctb:.1%}"}</td>'
            f'<td>{"yes" if r.get("significant") else "no"}</td>'
        )
    seg = f'<td class="l">{_e(r.get("segment"))}</td>' if segment else ""
    units = f'{int(r.get("control_units") or 0):,} / {int(r.get("variant_units") or 0):,}'
    arrow = " ↓" if _direction(experiment, r.get("metric_key", "")) == "decrease" else ""
    return (
        f'<tr{primary}>{seg}<td class="l"><b>{_e(r.get("metric_key"))}</b>{arrow} '
        f'<span class="muted small">{_e(r.get("metric_role"))}</span>'
        f'{_metric_note(experiment, r.get("metric_key", ""))}</td>'
        f'<td class="l">{_e(r.get("variant_key"))} vs {_e(r.get("control_key"))}</td>'
        f'<td>{units}</td><td>{num(r.get("control_mean"))}</td><td>{num(r.get("variant_mean"))}'
        f'</td>{body}</tr>'
    )


def _metric_note(experiment: Experiment, key: str) -> str:
    """A guardrail's margin or a constraint's bound, under the metric name."""
    m = _metric(experiment, key)
    if m is None:
        return ""
    notes = []
    if m.kind == "quantile" and m.quantile is not None:
        # means columns hold the arm's quantile for these (SPEC §3.2)
        over = "events" if m.level == "event" else f"per-unit {m.value}"
        notes.append(f"p{m.quantile * 100:g} over {over}")
    if m.role == "guardrail" and m.non_inferiority_margin is not None:
        notes.append(f"margin {m.non_inferiority_margin:.1%}")
    if m.capped:
        notes.append("capped")
    if m.numerator_filter or m.denominator_filter:
        notes.append("filtered")
    if m.max is not None:
        notes.append(f"mean ≤ {m.max:g}")
    if m.min is not None:
        notes.append(f"mean ≥ {m.min:g}")
    return f'<div class="ci">{_e(", ".join(notes))}</div>' if notes else ""


def _table_head(segment: bool) -> str:
    """Header row of the results and segment tables."""
    seg = '<th class="l">segment</th>' if segment else ""
    abs_head = "" if segment else "<th>abs lift [95% CI]</th>"
    return (
        f'<tr>{seg}<th class="l">metric</th><th class="l">comparison</th><th>units (C / V)</th>'
        f'<th>control mean</th><th>variant mean</th>{abs_head}'
        '<th>rel lift [95% CI]</th><th>p</th><th>adjusted p</th><th>chance to beat control</th>'
        '<th>significant</th></tr>'
    )


def _results_section(experiment: Experiment, latest: Row) -> str:
    """The detailed results table of the latest run."""
    rows = _sorted_insights(experiment, latest.get("insights") or [])
    if not rows:
        return ('<section class="card"><h2>Results</h2><p class="empty">No results in the '
                'latest run.</p></section>')
    body = "".join(_result_row(experiment, r) for r in rows)
    method = ", ".join(sorted({str(r.get("method")) for r in rows if r.get("method")}))
    return (
        f'<section class="card"><h2>Results (latest run)</h2><div class="scroll"><table>'
        f'{_table_head(False)}{body}</table></div><p class="muted small">Method: {_e(method)}'
        f' · correction: '
        f'{_e(experiment.analysis.correction)} · ↓ = lower is better.</p></section>'
    )


def _metric_options_section(experiment: Experiment, latest: Row) -> str:
    """Capped metrics beside their uncapped results, and the filters of filtered metrics."""
    notes = latest.get("metric_notes") or {}
    rows = [r for r in _sorted_insights(experiment, latest.get("insights") or [])
            if (notes.get(r.get("metric_key", "")) or {}).get("capping")
            and r.get("uncapped_rel_lift") is not None]
    body = "".join(
        f'<tr><td class="l"><b>{_e(r.get("metric_key"))}</b></td>'
        f'<td class="l">{_e(r.get("variant_key"))} vs {_e(r.get("control_key"))}</td>'
        f'<td class="l wrap">{_e(notes[r["metric_key"]]["capping"])}</td>'
        f'<td>{num(r.get("control_mean"))} → {num(r.get("variant_mean"))}</td>'
        f'<td>{pct(r.get("rel_lift"))} [{pct(r.get("rel_ci_low"))}, {pct(r.get("rel_ci_high"))}]'
        f'</td><td>{p_fmt(r.get("p_value"))}</td>'
        f'<td>{num(r.get("uncapped_control_mean"))} → {num(r.get("uncapped_variant_mean"))}</td>'
        f'<td>{pct(r.get("uncapped_rel_lift"))} [{pct(r.get("uncapped_rel_ci_low"))}, '
        f'{pct(r.get("uncapped_rel_ci_high"))}]</td><td>{p_fmt(r.get("uncapped_p_value"))}</td>'
        '</tr>'
        for r in rows
    )
    filters = "".join(
        f'<li><b>{_e(key)}</b>: only events where {_e(note["filter"])}</li>'
        for key, note in notes.items() if note.get("filter")
    )
    if not body and not filters:
        return ""
    table = (
        '<div class="scroll"><table><tr><th class="l">metric</th><th class="l">comparison</th>'
        '<th class="l">capping (caps used)</th><th>capped means (C → V)</th>'
        '<th>capped rel lift [95% CI]</th><th>p</th><th>uncapped means (C → V)</th>'
        '<th>uncapped rel lift [95% CI]</th><th>uncapped p</th></tr>'
        f'{body}</table></div><p class="muted small">Decisions use the capped results; the '
        'uncapped ones show what capping changed (not adjusted for multiple testing).</p>'
        if body else ""
    )
    listing = f'<ul class="small">{filters}</ul>' if filters else ""
    return (
        f'<section class="card"><h2>Capping and filters</h2>{table}{listing}</section>'
    )


def _segments_section(experiment: Experiment, latest: Row, history: list[Row]) -> str:
    """Segment breakdown of the latest run (empty string when there are no segments)."""
    as_of = (latest.get("run") or {}).get("as_of")
    stamps = [r["as_of"] for r in history if isinstance(r.get("as_of"), datetime)]
    if as_of is None and stamps:
        as_of = max(stamps)
    rows = [r for r in history if r.get("as_of") == as_of and r.get("segment", "all") != "all"]
    if not rows:
        return ""
    order = _metric_order(experiment)
    rows.sort(key=lambda r: (order.get(r.get("metric_key", ""), 99), str(r.get("segment")),
                             str(r.get("variant_key"))))
    body = "".join(_result_row(experiment, r, segment=True) for r in rows)
    return (
        f'<section class="card"><h2>Segment breakdown (latest run)</h2>'
        f'<div class="scroll"><table>{_table_head(True)}{body}</table></div>'
        '<p class="muted small">Segments are for '
        'exploration: many comparisons, so expect some false positives.</p></section>'
    )


def _bandit_section(experiment: Experiment, latest: Row) -> str:
    """A bandit's estimator note and weight history (templates/bandit.html.j2)."""
    from abflow.reporting import render

    if experiment.allocation != "bandit":
        return ""
    bandit = bandit_history((latest.get("recommendation") or {}).get("details"))
    if bandit is None:
        return ""
    cfg = latest.get("config") or {}
    current = {str(v["key"]): float(v["weight"]) for v in cfg.get("variants") or []}
    return render(
        "bandit.html.j2", bandit=bandit, arms=[v.key for v in experiment.variants], current=current
    )


def render_report_body(
    experiment: Experiment, latest: dict[str, Any], history: list[dict[str, Any]]
) -> Markup:
    """The report's sections (header to segments): the part the web page shows as well."""
    return Markup("".join((  # each section escapes with _e
        _header(experiment, latest),
        _recommendation(experiment, latest),
        _bandit_section(experiment, latest),
        _forest_section(experiment, latest),
        _lift_section(experiment, history),
        _health_section(latest),
        _results_section(experiment, latest),
        _metric_options_section(experiment, latest),
        exposure_age_section(experiment, latest),
        _segments_section(experiment, latest, history),
    )))


def render_report(
    experiment: Experiment, latest: dict[str, Any], history: list[dict[str, Any]]
) -> str:
    """The whole report as one self-contained HTML page (the shared layout template)."""
    from abflow.reporting import render

    run = latest.get("run") or {}
    return render(
        "report.html.j2",
        title=f"{experiment.name} — A/B test report",
        body=render_report_body(experiment, latest, history),
        run_id=run.get("run_id", "—"),
        generated=datetime.now(UTC),
    ) + "\n"
