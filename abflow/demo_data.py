"""Synthetic raw data (SPEC §3.1 assignments and events) for the example experiments."""

from __future__ import annotations

import hashlib
import io
import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from psycopg import Connection, sql

from abflow.definitions import Experiment
from abflow.package_data import package_path

# The example definitions `abflow demo` loads: abflow/experiments inside the package (the
# checkout's top-level experiments/ links there), so the demo works from any directory.
DEMO_EXPERIMENTS_DIR = package_path("experiments")

ASSIGNMENT_COLUMNS = ("experiment_key", "unit_id", "variant_key", "assigned_at", "attributes")
EVENT_COLUMNS = ("unit_id", "event_name", "value", "occurred_at", "properties")

# Unit counts per experiment: ~28k units and ~200k events load in a couple of seconds.
DEFAULT_UNITS: dict[str, int] = {
    "checkout_button": 13_000,
    "followup_timing": 6_000,
    "enrichment_strategy": 9_000,
}
GENERIC_UNITS = 4_000
UNIT_PREFIXES: dict[str, str] = {
    "checkout_button": "ck",
    "followup_timing": "fu",
    "enrichment_strategy": "en",
}

_US_PER_HOUR = 3_600_000_000
_US_PER_DAY = 24 * _US_PER_HOUR
_TWO_64 = float(2**64)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

IntArray = np.ndarray[Any, np.dtype[np.int64]]
FloatArray = np.ndarray[Any, np.dtype[np.float64]]


def bucket(experiment_key: str, unit_id: str) -> float:
    """SPEC §3.4 bucket: first 8 bytes of sha256("key:unit") as unsigned big-endian / 2^64."""
    digest = hashlib.sha256(f"{experiment_key}:{unit_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _TWO_64


def assign_indices(experiment: Experiment, unit_ids: list[str]) -> IntArray:
    """Variant index per unit: variants in definition order take consecutive weight intervals."""
    buckets = np.array([bucket(experiment.key, u) for u in unit_ids], dtype=np.float64)
    cumulative = np.cumsum([v.weight for v in experiment.variants])
    # first variant whose cumulative weight exceeds the bucket (as the SQL function does);
    # rounding of weights summing to 1 within 1e-6 leaves the rest to the last arm
    idx = np.searchsorted(cumulative, buckets, side="right")
    return np.minimum(idx, len(experiment.variants) - 1).astype(np.int64)


def unit_prefix(experiment_key: str) -> str:
    """Unit-id prefix of an experiment, so its units (and their events) never collide."""
    return UNIT_PREFIXES.get(experiment_key, experiment_key)


@dataclass
class _Units:
    """One experiment's simulated units: ids, arms, first exposure and segment attributes."""

    experiment: Experiment
    ids: np.ndarray[Any, np.dtype[np.object_]]
    arm: IntArray
    exposed: IntArray  # microseconds since the epoch, UTC
    as_of: int
    attributes: list[dict[str, str]]
    rng: np.random.Generator
    chunks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def n(self) -> int:
        """Number of units."""
        return len(self.ids)

    def per_arm(self, by_variant: dict[str, float]) -> FloatArray:
        """Per-unit parameter from a per-variant mapping; unknown variants get the control's."""
        default = by_variant.get(self.experiment.control.key, next(iter(by_variant.values())))
        table = np.array([by_variant.get(v.key, default) for v in self.experiment.variants])
        return table[self.arm]

    def emit(
        self,
        unit: IntArray,
        name: str,
        at: IntArray,
        value: np.ndarray[Any, Any] | None = None,
        properties: dict[str, Any] | list[dict[str, Any]] | None = None,
    ) -> None:
        """Queue events (unit index, time, optional value); those after as_of are dropped later."""
        vals = np.full(len(unit), np.nan) if value is None else np.asarray(value, dtype=np.float64)
        self.chunks.append(
            {"unit": unit, "name": name, "at": at.astype(np.int64), "value": vals,
             "properties": properties}
        )


def _hours(h: FloatArray | float) -> Any:
    return np.round(np.asarray(h) * _US_PER_HOUR).astype(np.int64)


def _delay_hours(rng: np.random.Generator, size: int, scale: float, window: float) -> FloatArray:
    """Exponential delays (mean ~scale hours) truncated to [0, window) by inverse CDF."""
    u = rng.random(size)
    return -scale * np.log1p(-u * (1.0 - np.exp(-window / scale)))


def _rate_for(p: float, shape: float) -> float:
    """Poisson rate r with E[1 - exp(-r*lam)] = p for lam ~ Gamma(shape, 1/shape) (mean 1)."""
    # E[exp(-r*lam)] = (1 + r/shape)^-shape, solved for r
    return shape * ((1.0 - p) ** (-1.0 / shape) - 1.0)


def _choice(rng: np.random.Generator, levels: dict[str, float], size: int) -> list[str]:
    keys = list(levels)
    probs = np.array(list(levels.values()))
    return [keys[i] for i in rng.choice(len(keys), size=size, p=probs / probs.sum())]


def _repeat(counts: IntArray) -> IntArray:
    """Unit index repeated count times: the vectorised 'one row per event' expansion."""
    return np.repeat(np.arange(len(counts), dtype=np.int64), counts)


# scenarios ---------------------------------------------------------------------------------------
# Each scenario gets units whose arms and exposure times are fixed, sets their attributes and
# emits events; the constants below are the true effects baked into the data.

PURCHASE_RATE = {"control": 0.10, "green": 0.12}
CTR = {"control": 0.080, "green": 0.084}
LATENCY_FACTOR = {"control": 1.0, "green": 1.0}
# Return visits: the new colour draws people back in their first week only (a novelty effect
# the exposure-age cohorts and the novelty_effect check show), then visits are as before.
SESSION_NOVELTY = {"control": 1.0, "green": 1.3}
REPLY_RATE = {"delay_30m": 0.20, "delay_5m": 0.22}
MEETING_GIVEN_REPLY = 0.40
FOLLOWUP_DELAY_MIN = {"delay_30m": 30.0, "delay_5m": 5.0}


def _revenue(rng: np.random.Generator, size: int) -> FloatArray:
    """Order values in EUR (log-normal, median 40), rounded to cents, with a few whales.

    About 1 order in 250 (chosen by its cents, so the random stream is unchanged) is a bulk
    order worth 40 times as much: the outliers a capped revenue metric is for.
    """
    values = np.round(rng.lognormal(np.log(40.0), 0.6, size), 2)
    whales = np.round(values * 100).astype(np.int64) % 250 == 7
    return np.where(whales, np.round(values * 40.0, 2), values)


def _purchase_properties(platforms: list[str], unit: IntArray, values: FloatArray) -> list[Any]:
    """Per-purchase properties: the buyer's platform and the order amount (filter examples)."""
    return [
        {"platform": platforms[i], "amount": float(v)}
        for i, v in zip(unit.tolist(), values.tolist(), strict=True)
    ]


def _checkout(u: _Units) -> None:
    """Button colour: green lifts purchase rate 10% -> 12%; CTR +5%; latency unchanged."""
    rng, n = u.rng, u.n
    countries = _choice(rng, {"DE": 0.30, "US": 0.30, "GB": 0.15, "FR": 0.15, "NL": 0.10}, n)
    platforms = _choice(rng, {"web": 0.60, "ios": 0.25, "android": 0.15}, n)
    u.attributes = [
        {"country": c, "platform": p} for c, p in zip(countries, platforms, strict=True)
    ]

    # A per-user buying propensity drives both pre- and post-exposure purchases, which is what
    # gives CUPED a covariate with real correlation.
    shape = 0.4
    lam = rng.gamma(shape, 1.0 / shape, n)
    pre = rng.poisson(lam * 0.3)
    pre_unit = _repeat(pre)
    pre_at = u.exposed[pre_unit] - _hours(rng.uniform(1.0, 14 * 24 - 1.0, len(pre_unit)))
    pre_values = _revenue(rng, len(pre_unit))
    u.emit(pre_unit, "purchase", pre_at, pre_values,
           _purchase_properties(platforms, pre_unit, pre_values))

    rate = np.array([_rate_for(p, shape) for p in u.per_arm(PURCHASE_RATE)])
    buys = rng.random(n) < 1.0 - np.exp(-rate * lam)
    extra = np.where(buys, rng.poisson(0.25 * lam), 0)
    post_unit = _repeat(buys.astype(np.int64) + extra)
    post_at = u.exposed[post_unit] + _hours(_delay_hours(rng, len(post_unit), 30.0, 167.0))
    post_values = _revenue(rng, len(post_unit))
    u.emit(post_unit, "purchase", post_at, post_values,
           _purchase_properties(platforms, post_unit, post_values))

    impressions = 1 + rng.poisson(3.0, n)
    imp_unit = _repeat(impressions)
    imp_at = u.exposed[imp_unit] + _hours(rng.uniform(0.0, 7 * 24.0, len(imp_unit)))
    u.emit(imp_unit, "impression", imp_at)
    clicked = rng.random(len(imp_unit)) < u.per_arm(CTR)[imp_unit]
    click_at = imp_at[clicked] + (rng.exponential(20.0, clicked.sum()) * 1e6).astype(np.int64)
    u.emit(imp_unit[clicked], "click", click_at)

    # Latency: a per-device factor (shared pre/post) times per-load noise; the first load is
    # the exposure itself.
    device = rng.lognormal(0.0, 0.15, n) * u.per_arm(LATENCY_FACTOR)
    loads = 2 + rng.poisson(2.0, n)
    load_unit = _repeat(loads)
    first = np.r_[True, load_unit[1:] != load_unit[:-1]]
    load_at = u.exposed[load_unit] + np.where(
        first, 0, _hours(rng.uniform(0.0, 7 * 24.0, len(load_unit)))
    )
    u.emit(load_unit, "page_load", load_at,
           np.round(850.0 * device[load_unit] * rng.lognormal(0.0, 0.3, len(load_unit)), 1))
    pre_loads = rng.poisson(1.5, n)
    pl_unit = _repeat(pre_loads)
    u.emit(pl_unit, "page_load",
           u.exposed[pl_unit] - _hours(rng.uniform(1.0, 14 * 24 - 1.0, len(pl_unit))),
           np.round(850.0 * device[pl_unit] * rng.lognormal(0.0, 0.3, len(pl_unit)), 1))
    _sessions(u)


def _sessions(u: _Units) -> None:
    """Weekly return visits after exposure, green's first week boosted (SESSION_NOVELTY)."""
    # its own generator: the draws above (and the assignments after) stay as they were
    rng = np.random.default_rng([zlib.crc32(b"checkout_sessions"), u.n])
    habit = rng.gamma(2.0, 0.5, u.n)
    boost = u.per_arm(SESSION_NOVELTY)
    for week in range(4):
        counts = rng.poisson(habit * (boost if week == 0 else 1.0))
        unit = _repeat(counts)
        at = u.exposed[unit] + _hours(rng.uniform(week * 168.0, (week + 1) * 168.0, len(unit)))
        u.emit(unit, "session_start", at)


def _followup(u: _Units) -> None:
    """Follow-up delay: 5 min lifts replies 20% -> 22% and meetings 8% -> 8.8% (not yet sig.)."""
    rng, n = u.rng, u.n
    segments = _choice(rng, {"smb": 0.6, "mid_market": 0.3, "enterprise": 0.1}, n)
    sources = _choice(rng, {"inbound_form": 0.7, "webinar": 0.2, "referral": 0.1}, n)
    u.attributes = [{"segment": s, "source": o} for s, o in zip(segments, sources, strict=True)]

    sent_at = u.exposed + _hours(u.per_arm(FOLLOWUP_DELAY_MIN) / 60.0)
    everyone = np.arange(n, dtype=np.int64)
    u.emit(everyone, "email_sent", sent_at)

    shape = 2.0
    lam = rng.gamma(shape, 1.0 / shape, n)  # lead quality: some leads are simply warmer
    rate = np.array([_rate_for(p, shape) for p in u.per_arm(REPLY_RATE)])
    replied = everyone[rng.random(n) < 1.0 - np.exp(-rate * lam)]
    reply_at = sent_at[replied] + _hours(_delay_hours(rng, len(replied), 10.0, 120.0))
    u.emit(replied, "email_reply", reply_at)

    booked = rng.random(len(replied)) < MEETING_GIVEN_REPLY
    book_at = reply_at[booked] + _hours(_delay_hours(rng, int(booked.sum()), 18.0, 40.0))
    u.emit(replied[booked], "meeting_booked", book_at)


# enrichment strategy: per-provider prices (charged only when the provider finds a match)
PAID_PROVIDERS = {"paid_firmographics": 0.10, "paid_contacts": 0.06, "paid_social": 0.04}
FREE_PROVIDERS = {"free_web": 0.005, "free_registry": 0.006}
FREE_HIT_RATE = {"free_web": 1.0, "free_registry": 0.85}
PAID_MATCH_RATE = 0.9
FALLBACK_BELOW = 0.8


def _sigmoid(x: FloatArray) -> FloatArray:
    return 1.0 / (1.0 + np.exp(-x))


def _enrichment(u: _Units) -> None:
    """Providers: full stack 0.92 complete at $0.18, free 0.71 at $0.01, hybrid 0.89 at $0.06."""
    rng, n = u.rng, u.n
    kinds = _choice(rng, {"company": 0.55, "contact": 0.45}, n)
    sources = _choice(rng, {"crm_import": 0.5, "signup": 0.3, "api": 0.2}, n)
    u.attributes = [{"record_type": k, "source": s} for k, s in zip(kinds, sources, strict=True)]
    arm_key = np.array([v.key for v in u.experiment.variants])[u.arm]
    everyone = np.arange(n, dtype=np.int64)

    # Record difficulty is shared by all providers: hard records are incomplete everywhere.
    hard = rng.normal(0.0, 1.0, n)
    free_score = _sigmoid(1.15 - 1.1 * hard + rng.normal(0.0, 0.35, n))
    paid_score = _sigmoid(2.75 - 0.7 * hard + rng.normal(0.0, 0.35, n))
    fallback_score = np.maximum(free_score, _sigmoid(2.75 - 0.7 * hard + rng.normal(0.0, 0.35, n)))

    free_calls = arm_key != "full_stack"
    paid_all = ~free_calls
    fallback = (arm_key == "hybrid") & (free_score < FALLBACK_BELOW)
    completeness = np.where(paid_all, paid_score, np.where(fallback, fallback_score, free_score))

    call_at = u.exposed.copy()
    for provider, price in FREE_PROVIDERS.items():
        # free sources bill compute only when they return something, so cost varies a little
        who = everyone[free_calls & (rng.random(n) < FREE_HIT_RATE[provider])]
        u.emit(who, "enrichment_cost", call_at[who] + 1_000_000, np.full(len(who), price),
               {"provider": provider})
    for provider, price in PAID_PROVIDERS.items():
        calls = paid_all | (fallback & (provider == "paid_firmographics"))
        who = everyone[calls & (rng.random(n) < PAID_MATCH_RATE)]
        u.emit(who, "enrichment_cost", call_at[who] + 3_000_000, np.full(len(who), price),
               {"provider": provider})
    done_at = call_at + (rng.uniform(5.0, 90.0, n) * 1e6).astype(np.int64)
    u.emit(everyone, "enrichment_completed", done_at, np.round(completeness, 3))

    # Users fix what enrichment missed, so incomplete records get edited more often.
    edit_p = 0.04 + 0.30 * (1.0 - completeness)
    edited = everyone[rng.random(n) < edit_p]
    edit_at = done_at[edited] + _hours(_delay_hours(rng, len(edited), 24.0, 160.0))
    u.emit(edited, "user_edit", edit_at)


def _generic(u: _Units) -> None:
    """Any other definition: no true effect, a few events of every metric's event names."""
    rng, n = u.rng, u.n
    u.attributes = [{"country": c} for c in _choice(rng, {"DE": 0.4, "US": 0.4, "GB": 0.2}, n)]
    names = sorted(
        {m.numerator_event for m in u.experiment.metrics}
        | {m.denominator_event for m in u.experiment.metrics if m.denominator_event}
    )
    for name in names:
        unit = _repeat(rng.poisson(0.5, n))
        at = u.exposed[unit] + _hours(rng.uniform(0.0, 7 * 24.0, len(unit)))
        u.emit(unit, name, at, np.round(rng.lognormal(1.0, 0.8, len(unit)), 2))


SCENARIOS: dict[str, Callable[[_Units], None]] = {
    "checkout_button": _checkout,
    "followup_timing": _followup,
    "enrichment_strategy": _enrichment,
}


# assembly ----------------------------------------------------------------------------------------

def _to_us(ts: datetime) -> int:
    if ts.tzinfo is None:
        raise ValueError(f"{ts.isoformat()}: timestamps must be timezone-aware")
    return (ts - _EPOCH) // timedelta(microseconds=1)


def _timestamps(us: IntArray) -> pd.DatetimeIndex:
    return pd.to_datetime(us, unit="us", utc=True)


def _simulate(experiment: Experiment, as_of: datetime, seed: int, scale: float) -> _Units:
    """Units arriving uniformly between start_at and as_of, assigned by the SPEC hash."""
    start = _to_us(experiment.start_at)
    end = min(_to_us(as_of), _to_us(experiment.end_at) if experiment.end_at else _to_us(as_of))
    if end <= start:
        raise ValueError(
            f"{experiment.key}: as_of {as_of.isoformat()} is not after start_at "
            f"{experiment.start_at.isoformat()}; nothing to simulate"
        )
    # Seeded per experiment, so adding an experiment never changes another one's data.
    rng = np.random.default_rng([seed, zlib.crc32(experiment.key.encode())])
    n = max(2, round(DEFAULT_UNITS.get(experiment.key, GENERIC_UNITS) * scale))
    exposed = np.sort(rng.integers(start, end, n, dtype=np.int64))
    prefix = unit_prefix(experiment.key)
    ids = np.array([f"{prefix}_{i:06d}" for i in range(1, n + 1)], dtype=object)
    arm = assign_indices(experiment, list(ids))
    return _Units(experiment, ids, arm, exposed, _to_us(as_of), [], rng)


def _assignment_frame(u: _Units) -> pd.DataFrame:
    """First exposures plus realistic repeat exposures (same variant, same attributes)."""
    rng = u.rng
    repeats = np.where(rng.random(u.n) < 0.2, 1 + rng.poisson(0.5, u.n), 0)
    rep_unit = _repeat(repeats)
    rep_at = u.exposed[rep_unit] + _hours(rng.exponential(36.0, len(rep_unit)))
    unit = np.concatenate([np.arange(u.n, dtype=np.int64), rep_unit])
    at = np.concatenate([u.exposed, rep_at])
    keep = at <= u.as_of
    unit, at = unit[keep], at[keep]
    variant_keys = np.array([v.key for v in u.experiment.variants], dtype=object)
    attrs = np.empty(u.n, dtype=object)
    attrs[:] = u.attributes
    return pd.DataFrame(
        {
            "experiment_key": pd.array([u.experiment.key] * len(unit), dtype="str"),
            "unit_id": pd.array(u.ids[unit], dtype="str"),
            "variant_key": pd.array(variant_keys[u.arm[unit]], dtype="str"),
            "assigned_at": _timestamps(at),
            "attributes": attrs[unit],
        }
    )


def _event_frame(u: _Units) -> pd.DataFrame:
    """All queued events, without any that would lie after as_of."""
    if not u.chunks:
        return _empty_events()
    unit = np.concatenate([c["unit"] for c in u.chunks])
    at = np.concatenate([c["at"] for c in u.chunks])
    value = np.concatenate([c["value"] for c in u.chunks])
    name = np.concatenate([np.full(len(c["unit"]), c["name"], dtype=object) for c in u.chunks])
    props = np.empty(len(unit), dtype=object)
    # one shared dict per chunk is fine: the frames are read, never mutated in place
    props[:] = [
        p
        for c in u.chunks
        for p in (
            c["properties"]
            if isinstance(c["properties"], list)
            else [c["properties"]] * len(c["unit"])
        )
    ]
    keep = at <= u.as_of
    return pd.DataFrame(
        {
            "unit_id": pd.array(u.ids[unit[keep]], dtype="str"),
            "event_name": pd.array(name[keep], dtype="str"),
            "value": value[keep],
            "occurred_at": _timestamps(at[keep]),
            "properties": props[keep],
        }
    )


def _empty_events() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "unit_id": pd.array([], dtype="str"),
            "event_name": pd.array([], dtype="str"),
            "value": np.array([], dtype=np.float64),
            "occurred_at": _timestamps(np.array([], dtype=np.int64)),
            "properties": np.array([], dtype=object),
        }
    )


def generate_demo_data(
    experiments: list[Experiment], *, as_of: datetime, seed: int = 7, scale: float = 1.0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Deterministic (assignments, events) frames with the raw-table columns."""
    if scale <= 0:
        raise ValueError("scale must be positive")
    assignments: list[pd.DataFrame] = []
    events: list[pd.DataFrame] = []
    for experiment in experiments:
        units = _simulate(experiment, as_of, seed, scale)
        SCENARIOS.get(experiment.key, _generic)(units)
        events.append(_event_frame(units))
        assignments.append(_assignment_frame(units))
    a = pd.concat(assignments, ignore_index=True) if assignments else _assignment_frame_empty()
    e = pd.concat(events, ignore_index=True) if events else _empty_events()
    a = a.sort_values(["assigned_at", "unit_id"], kind="stable", ignore_index=True)
    e = e.sort_values(["occurred_at", "unit_id", "event_name"], kind="stable", ignore_index=True)
    return a, e


def _assignment_frame_empty() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "experiment_key": pd.array([], dtype="str"),
            "unit_id": pd.array([], dtype="str"),
            "variant_key": pd.array([], dtype="str"),
            "assigned_at": _timestamps(np.array([], dtype=np.int64)),
            "attributes": np.array([], dtype=object),
        }
    )


# loading -----------------------------------------------------------------------------------------

def _csv(frame: pd.DataFrame, columns: tuple[str, ...]) -> str:
    """COPY-ready CSV text: empty unquoted fields are NULL, timestamps are explicit UTC."""
    out = frame.loc[:, list(columns)].copy()
    for name in columns:
        col = out[name]
        if isinstance(col.dtype, pd.DatetimeTZDtype):
            # numpy formats 10x faster than strftime; the offset makes the instant unambiguous
            utc = col.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[us]")
            out[name] = np.char.add(np.datetime_as_string(utc, unit="us"), "+00:00")
        elif col.dtype == object:
            # pandas 2 stores text as object too: only dicts and lists are JSON documents
            out[name] = col.map(
                lambda d: d if d is None or isinstance(d, str) else json.dumps(d, sort_keys=True)
            )
    buf = io.StringIO()
    out.to_csv(buf, index=False, header=False, na_rep="")
    return buf.getvalue()


def _copy(
    conn: Connection[Any], table: sql.Composable, columns: tuple[str, ...], text: str
) -> None:
    query = sql.SQL("copy {} ({}) from stdin (format csv)").format(
        table, sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    )
    with conn.cursor() as cur, cur.copy(query) as copy:
        copy.write(text)


def load_frames(
    conn: Connection[Any],
    schema: str,
    assignments: pd.DataFrame,
    events: pd.DataFrame,
    *,
    replace_experiments: list[str],
) -> tuple[int, int]:
    """Replace these experiments' raw rows by the frames via COPY (no commit); return row counts."""
    unknown = sorted(set(assignments["experiment_key"]) - set(replace_experiments))
    if unknown:
        # their old rows would not be deleted, so a second load would duplicate them
        raise ValueError(f"assignments for experiments not in replace_experiments: {unknown}")
    a_table = sql.Identifier(schema, "assignments")
    e_table = sql.Identifier(schema, "events")
    new_units = sorted(set(events["unit_id"]) | set(assignments["unit_id"]))
    with conn.cursor() as cur:
        # Events belong to units, not experiments: drop those of the units already loaded for
        # these experiments and of the units about to be loaded, then the exposures themselves.
        cur.execute(
            sql.SQL(
                "delete from {e} where unit_id in ("
                " select unit_id from {a} where experiment_key = any(%(keys)s)"
                " union select unnest(cast(%(units)s as text[])))"
            ).format(e=e_table, a=a_table),
            {"keys": list(replace_experiments), "units": new_units},
        )
        cur.execute(
            sql.SQL("delete from {} where experiment_key = any(%s)").format(a_table),
            [list(replace_experiments)],
        )
    _copy(conn, a_table, ASSIGNMENT_COLUMNS, _csv(assignments, ASSIGNMENT_COLUMNS))
    _copy(conn, e_table, EVENT_COLUMNS, _csv(events, EVENT_COLUMNS))
    return len(assignments), len(events)
