"""Experiment definitions: the YAML contract of SPEC §3.2 as frozen, validated models."""

from __future__ import annotations

import builtins
import math
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

KEY_PATTERN = r"^[a-z0-9_]+$"
Key = Annotated[str, Field(pattern=KEY_PATTERN, min_length=1, max_length=63)]
EventName = Annotated[str, Field(min_length=1, max_length=200)]

Status = Literal["draft", "running", "stopped", "concluded"]
MetricKind = Literal["proportion", "mean", "ratio", "quantile"]
# quantile metrics: over per-unit values, or over events (clustered by unit)
QuantileLevel = Literal["unit", "event"]
ValueAgg = Literal["sum", "mean", "count", "max"]
Direction = Literal["increase", "decrease"]
Role = Literal["primary", "secondary", "guardrail", "constraint"]
Engine = Literal["frequentist", "bayesian"]
TestKind = Literal["welch", "z_pooled"]
Correction = Literal["none", "holm", "benjamini_hochberg", "bonferroni"]
Allocation = Literal["fixed", "bandit"]


class DefinitionError(ValueError):
    """A definition file is invalid; the message is one line naming the file and field."""


class _Frozen(BaseModel):
    # allow_inf_nan=False: `.inf`/`.nan` in YAML are rejected with the field's name, not stored.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Variant(_Frozen):
    """One arm: its key, traffic weight, whether it is the control and the config apps receive."""

    key: Key
    weight: float = Field(ge=0.0, le=1.0)
    control: bool = False
    config: dict[str, Any] = Field(default_factory=dict)

    @field_validator("config", mode="after")
    @classmethod
    def _json_config(cls, value: dict[str, Any]) -> dict[str, Any]:
        return json_value(value)  # apps read it as jsonb


class PriorSpec(_Frozen):
    """A normal prior N(mean, stddev²) on the relative lift."""

    mean: float = Field(default=0.0, allow_inf_nan=False)
    stddev: float = Field(gt=0, allow_inf_nan=False)


Prior = Literal["flat", "proper"] | PriorSpec
Sided = Literal["two", "one"]


CapType = Literal["percentile", "absolute"]
FilterOp = Literal["=", "!=", "in", "not_in", "<", "<=", ">", ">=", "exists"]
# Property names become JSON path keys in the rendered SQL: letters, digits, underscore.
PROPERTY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
FilterValue = Annotated[str, Field(max_length=500)] | bool | int | float


class Capping(_Frozen):
    """Winsorization of per-unit values: at percentiles (pooled over all arms) or fixed bounds."""

    type: CapType
    upper: float | None = Field(default=None, allow_inf_nan=False)
    lower: float | None = Field(default=None, allow_inf_nan=False)
    # percentile: the percentile is taken over the non-zero values only (GrowthBook)
    ignore_zeros: bool = False

    @model_validator(mode="after")
    def _bounds(self) -> Capping:
        if self.upper is None and self.lower is None:
            raise ValueError("capping needs 'upper' or 'lower'")
        if self.type == "percentile":
            for name, v in (("upper", self.upper), ("lower", self.lower)):
                if v is not None and not 0 < v < 1:
                    raise ValueError(f"percentile capping: {name} must be between 0 and 1, got {v}")
        elif self.ignore_zeros:
            raise ValueError("ignore_zeros applies to percentile capping only")
        if self.upper is not None and self.lower is not None and self.lower >= self.upper:
            raise ValueError("capping: lower must be below upper")
        return self


class EventFilter(_Frozen):
    """A condition on events.properties: `{property: plan, op: in, values: [pro, team]}`.

    A number (or a list of numbers) compares the property as a number; a string (or booleans,
    compared as the JSON text true/false) compares its text exactly. Ordering operators take
    numbers only. A missing property or JSON null matches no operator (not `!=`/`not_in`
    either, as in SQL); a property that is not a number never matches a numeric comparison;
    `exists` matches a present, non-null property.
    """

    property: Annotated[str, Field(pattern=PROPERTY_PATTERN)]
    op: FilterOp
    value: FilterValue | None = None
    values: tuple[FilterValue, ...] | None = None

    @model_validator(mode="after")
    def _shape(self) -> EventFilter:
        many = self.op in ("in", "not_in")
        if self.op == "exists":
            if self.value is not None or self.values is not None:
                raise ValueError("op exists takes no value")
            return self
        if many:
            if self.value is not None or not self.values:
                raise ValueError(f"op {self.op} takes a non-empty list 'values'")
        elif self.values is not None or self.value is None:
            raise ValueError(f"op {self.op} takes one 'value'")
        kinds = {_value_kind(v) for v in (self.values or (self.value,))}
        if len(kinds) > 1:
            raise ValueError("filter values must all be numbers or all be text")
        if self.op in ("<", "<=", ">", ">=") and kinds != {"number"}:
            raise ValueError(f"op {self.op} compares numbers: give a number value")
        return self

    @builtins.property  # the field `property` shadows the builtin in this class body
    def numeric(self) -> bool:
        """Whether the property is compared as a number (the values are numbers)."""
        vals = self.values or ((self.value,) if self.value is not None else ())
        return bool(vals) and _value_kind(vals[0]) == "number"

    @builtins.property
    def bound_values(self) -> tuple[str | float, ...]:
        """The values as bound: floats for numeric filters, text (true/false) otherwise."""
        vals = self.values or ((self.value,) if self.value is not None else ())
        if self.numeric:
            return tuple(float(v) for v in vals)
        return tuple(_text(v) for v in vals if v is not None)


def _value_kind(v: object) -> str:
    return "number" if isinstance(v, int | float) and not isinstance(v, bool) else "text"


def _text(v: object) -> str:
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


class EventRef(_Frozen):
    """The event (and optional value aggregation) one side of a ratio counts."""

    event: EventName
    value: ValueAgg = "count"
    # Per-side options, combined with the metric's own (filters: all must hold).
    filter: tuple[EventFilter, ...] = ()
    capping: Capping | None = None


class Metric(_Frozen):
    """A metric: what is measured per unit, which way is better and what role it plays."""

    key: Key
    kind: MetricKind
    event: EventName | None = None
    value: ValueAgg | None = None
    numerator: EventRef | None = None
    denominator: EventRef | None = None
    window_hours: float | None = Field(default=None, gt=0)
    direction: Direction = "increase"
    role: Role = "secondary"
    non_inferiority_margin: float | None = Field(default=None, ge=0)
    max: float | None = None
    min: float | None = None
    mde: float | None = Field(default=None, gt=0)
    # one: test only in the metric's direction (primary and secondary metrics).
    sided: Sided = "two"
    # Overrides analysis.prior for this metric (bayesian engine).
    prior: Prior | None = None
    # kind: quantile — the quantile level (0.9 = p90) and what it is taken over: per-unit
    # values (`value` aggregates each unit's events) or the events themselves (`level: event`).
    quantile: float | None = Field(default=None, gt=0, lt=1)
    level: QuantileLevel | None = None
    # Winsorization of per-unit values (ratios: numerator and denominator, each its own cap).
    capping: Capping | None = None
    # Conditions on events.properties (ratios: both sides; sides may add their own).
    filter: tuple[EventFilter, ...] = ()

    @model_validator(mode="after")
    def _check_shape(self) -> Metric:
        if self.kind == "ratio":
            if self.numerator is None or self.denominator is None:
                raise ValueError("ratio metrics need 'numerator' and 'denominator'")
            if self.event is not None:
                raise ValueError("ratio metrics take 'numerator'/'denominator', not 'event'")
        else:
            if self.event is None:
                raise ValueError(f"{self.kind} metrics need 'event'")
            if self.numerator is not None or self.denominator is not None:
                raise ValueError("only ratio metrics take 'numerator'/'denominator'")
        if self.kind == "proportion" and self.value is not None:
            raise ValueError("proportion metrics take no 'value' aggregation")
        if self.kind == "mean" and self.value is None:
            object.__setattr__(self, "value", "sum")
        if self.kind == "quantile":
            if self.quantile is None:
                raise ValueError("quantile metrics need 'quantile' (e.g. 0.9 for p90)")
            if self.level is None:
                object.__setattr__(self, "level", "unit")
            if self.level == "event" and self.value is not None:
                raise ValueError("level: event takes each event's value; drop 'value'")
            if self.capping is not None:
                raise ValueError("quantile metrics take no 'capping' (quantiles resist outliers)")
            if self.value is None:
                # unit level: the unit's mean event value; event level: per-unit mean as context
                object.__setattr__(self, "value", "mean")
        elif self.quantile is not None or self.level is not None:
            raise ValueError("'quantile' and 'level' apply to kind: quantile only")
        if self.role == "constraint" and self.max is None and self.min is None:
            raise ValueError("constraint metrics need 'max' or 'min'")
        if self.kind == "proportion" and self.capping is not None:
            raise ValueError("proportion metrics take no capping (their values are 0 or 1)")
        if self.kind == "ratio" and self.capping is not None and self.capping.type == "absolute":
            raise ValueError(
                "ratio metrics: absolute capping goes on 'numerator'/'denominator' (their "
                "values have different units); metric-level capping must be percentile"
            )
        if self.kind == "ratio" and self.capping is not None:
            sides = (self.numerator, self.denominator)
            if any(side is not None and side.capping is not None for side in sides):
                raise ValueError("capping is set on the metric or on its sides, not both")
        if self.sided == "one" and self.role in ("guardrail", "constraint"):
            raise ValueError(
                f"sided: one applies to primary and secondary metrics ({self.role}s already "
                "test one side)"
            )
        return self

    @property
    def numerator_event(self) -> str:
        """Event counted in the numerator (the metric's own event for non-ratio kinds)."""
        return self.numerator.event if self.numerator else str(self.event)

    @property
    def numerator_agg(self) -> str:
        """Per-unit aggregation of the numerator: 'any' for proportions."""
        if self.kind == "proportion":
            return "any"
        if self.numerator is not None:
            return self.numerator.value
        return str(self.value)

    @property
    def denominator_event(self) -> str | None:
        """Event counted in the denominator of a ratio metric."""
        return self.denominator.event if self.denominator else None

    @property
    def denominator_agg(self) -> str | None:
        """Per-unit aggregation of a ratio's denominator."""
        return self.denominator.value if self.denominator else None

    @property
    def numerator_capping(self) -> Capping | None:
        """Capping of the per-unit value (ratios: of the numerator)."""
        return self.capping or (self.numerator.capping if self.numerator else None)

    @property
    def denominator_capping(self) -> Capping | None:
        """Capping of a ratio's per-unit denominator."""
        if self.kind != "ratio":
            return None
        return self.capping or (self.denominator.capping if self.denominator else None)

    @property
    def capped(self) -> bool:
        """Whether any side of the metric is capped."""
        return self.numerator_capping is not None or self.denominator_capping is not None

    @property
    def numerator_filter(self) -> tuple[EventFilter, ...]:
        """Conditions an event must meet to count in the value (ratios: the numerator)."""
        return self.filter + (self.numerator.filter if self.numerator else ())

    @property
    def denominator_filter(self) -> tuple[EventFilter, ...]:
        """Conditions an event must meet to count in a ratio's denominator."""
        return self.filter + (self.denominator.filter if self.denominator else ())


class Cuped(_Frozen):
    """CUPED settings: the pre-exposure lookback for the covariate."""

    lookback_days: int = Field(default=14, ge=1, le=365)


class Analysis(_Frozen):
    """How an experiment is analysed."""

    engine: Engine = "frequentist"
    test: TestKind = "welch"
    # Daily scheduled runs look at the data every day: decisions are always-valid by default.
    sequential: bool = True
    # N* of the mixture; unset = a quarter of the primary comparison's planned total sample.
    sequential_tuning: float | None = Field(default=None, gt=0)
    prior: Prior = "flat"
    alpha: float = Field(default=0.05, gt=0, lt=1)
    power: float = Field(default=0.8, gt=0, lt=1)
    # Applied per family (primary across treatments, guardrails, everything else); a family of
    # one comparison is unaffected, so two-arm tests keep the plain primary p-value.
    correction: Correction = "holm"
    min_sample_size: int = Field(default=150, ge=2)
    srm_threshold: float = Field(default=0.001, gt=0, lt=1)
    srm_warn_threshold: float = Field(default=0.01, gt=0, lt=1)
    multiple_exposure_warn: float = Field(default=0.01, ge=0, le=1)
    contamination_warn: float = Field(default=0.25, ge=0, le=1)
    cuped: Cuped | None = None
    segments: tuple[Key, ...] = ()
    # Health warnings from numbers already computed (GrowthBook's defaults).
    max_plausible_lift: float = Field(default=0.5, gt=0, allow_inf_nan=False)
    covariate_imbalance_threshold: float = Field(default=0.001, gt=0, lt=1)
    # Lift by days since each unit's first exposure (cohorts 0-6, 7-13, 14-20, 21+ days) and
    # the novelty_effect warning when the first week's lift differs from the later ones'.
    exposure_age: bool = True
    novelty_alpha: float = Field(default=0.01, gt=0, lt=1)

    @model_validator(mode="after")
    def _honoured(self) -> Analysis:
        # Every engine honours every setting it accepts: reject the combinations one would ignore.
        if self.engine == "bayesian" and self.test != "welch":
            raise ValueError("test: z_pooled is a frequentist test; the bayesian engine ignores it")
        if self.engine == "frequentist" and self.prior != "flat":
            raise ValueError("prior applies to engine: bayesian only")
        if not self.sequential and self.sequential_tuning is not None:
            raise ValueError("sequential_tuning needs sequential: true")
        return self


class Decision(_Frozen):
    """Decision and promotion policy."""

    auto_promote: bool = False
    min_runtime_days: float = Field(default=3, ge=0)
    max_runtime_days: float | None = Field(default=None, gt=0)
    expected_monthly_volume: float | None = Field(default=None, gt=0)
    bandit_floor: float = Field(default=0.01, ge=0, lt=0.5)
    bandit_min_units: int = Field(default=100, ge=1)
    # Top-two Thompson sampling (Russo 2016): β is the leader's share; unset = plain Thompson.
    bandit_top_two: float | None = Field(default=None, gt=0, lt=1)
    seed: int = 0


class Experiment(_Frozen):
    """A whole experiment definition (one YAML file)."""

    key: Key
    name: str = Field(min_length=1)
    hypothesis: str = ""
    status: Status = "draft"
    start_at: datetime
    end_at: datetime | None = None
    variants: tuple[Variant, ...] = Field(min_length=2)
    metrics: tuple[Metric, ...] = Field(min_length=1)
    analysis: Analysis = Analysis()
    decision: Decision = Decision()
    allocation: Allocation = "fixed"

    @model_validator(mode="after")
    def _check(self) -> Experiment:
        if self.start_at.tzinfo is None:
            raise ValueError("start_at needs a timezone (e.g. 2026-11-01T00:00:00Z)")
        if self.end_at is not None:
            if self.end_at.tzinfo is None:
                raise ValueError("end_at needs a timezone")
            if self.end_at <= self.start_at:
                raise ValueError("end_at must be after start_at")
        keys = [v.key for v in self.variants]
        if len(set(keys)) != len(keys):
            raise ValueError("variant keys must be unique")
        controls = [v.key for v in self.variants if v.control]
        if len(controls) != 1:
            raise ValueError(f"exactly one variant must have control: true (found {len(controls)})")
        total = sum(v.weight for v in self.variants)
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"variant weights must sum to 1 (they sum to {total:g})")
        metric_keys = [m.key for m in self.metrics]
        if len(set(metric_keys)) != len(metric_keys):
            raise ValueError("metric keys must be unique")
        primaries = [m.key for m in self.metrics if m.role == "primary"]
        if len(primaries) != 1:
            raise ValueError(f"exactly one metric must have role: primary (found {len(primaries)})")
        for m in self.metrics:
            if m.prior is not None and self.analysis.engine != "bayesian":
                raise ValueError(f"metric {m.key}: prior applies to engine: bayesian only")
            if m.sided == "one" and self.analysis.engine == "bayesian":
                raise ValueError(
                    f"metric {m.key}: sided: one is a frequentist test; the bayesian engine "
                    "reports the chance to beat control instead"
                )
        return self

    @property
    def control(self) -> Variant:
        """The control variant."""
        return next(v for v in self.variants if v.control)

    @property
    def treatments(self) -> tuple[Variant, ...]:
        """All non-control variants, in definition order."""
        return tuple(v for v in self.variants if not v.control)

    @property
    def primary_metric(self) -> Metric:
        """The one primary metric."""
        return next(m for m in self.metrics if m.role == "primary")

    def metric(self, key: str) -> Metric:
        """The metric with this key."""
        return next(m for m in self.metrics if m.key == key)

    def variant(self, key: str) -> Variant:
        """The variant with this key."""
        return next(v for v in self.variants if v.key == key)


def json_value(value: Any, path: str = "") -> Any:
    """A YAML value as JSON: dates become ISO strings; non-finite numbers and other types fail."""
    where = f"{path}: " if path else ""
    if isinstance(value, dict):
        return {str(k): json_value(v, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where}{value} is not a finite number")
    if isinstance(value, date):  # datetime is a date too
        return value.isoformat()
    if value is None or isinstance(value, str | bool | int | float):
        return value
    raise ValueError(f"{where}{type(value).__name__} values cannot be stored as JSON")


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key repeated in one mapping (PyYAML silently keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *defaults` merges on purpose
            key = self.construct_object(key_node, deep=deep)
            try:
                seen = first_line.get(key)
            except TypeError:
                continue  # an unhashable key: SafeLoader reports it below
            if seen is not None:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first on line {seen + 1})",
                    key_node.start_mark,
                )
            first_line[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str) -> Any:
    """Parse YAML like yaml.safe_load, but a duplicate key in a mapping is an error."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: no Python tags


def _field_path(loc: tuple[int | str, ...], data: Any) -> str:
    """Render a pydantic error location with variant/metric keys instead of list indexes."""
    parts: list[str] = []
    node = data
    for item in loc:
        if isinstance(item, int):
            label = str(item)
            if isinstance(node, list) and 0 <= item < len(node) and isinstance(node[item], dict):
                label = str(node[item].get("key", item))
            parts.append(f"[{label}]")
            node = node[item] if isinstance(node, list) and 0 <= item < len(node) else None
        else:
            if (
                item.startswith("function-")
                or item.startswith("literal[")
                or item in {"literal", "constrained-str"}
                or item[:1].isupper()  # a union member's class name, e.g. PriorSpec
            ):
                continue
            parts.append(f".{item}" if parts else item)
            node = node.get(item) if isinstance(node, dict) else None
    return "".join(parts) or "(top level)"


def parse_experiment(data: Any, source: str = "<input>") -> Experiment:
    """Validate one parsed YAML document; raise DefinitionError with a one-line message."""
    if not isinstance(data, dict):
        raise DefinitionError(f"{source}: expected a mapping at the top level")
    try:
        return Experiment.model_validate(data)
    except ValidationError as exc:
        # A union (e.g. prior: flat | proper | {mean, stddev}) reports one error per branch;
        # the structured branch's error names the field the user actually got wrong.
        errors = sorted(
            exc.errors(),
            key=lambda e: e["type"] == "literal_error" and isinstance(e.get("input"), dict),
        )
        err = errors[0]
        field = _field_path(tuple(err["loc"]), data)
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "string_pattern_mismatch":
            msg = f"must match {KEY_PATTERN} (lowercase letters, digits, underscore)"
        elif err["type"] == "literal_error":
            msg = f"{msg}, got {err.get('input')!r}"
        more = f" (+{len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise DefinitionError(f"{source}: {field}: {msg}{more}") from None


def load_experiment_file(path: Path) -> Experiment:
    """Read and validate one experiment YAML file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DefinitionError(f"{path}: cannot read file ({exc.strerror})") from None
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise DefinitionError(f"{path}:{where}: malformed YAML: {problem}") from None
    return parse_experiment(data, str(path))


def load_experiment_files(paths: list[Path]) -> list[Experiment]:
    """Load every YAML file under the given paths (files or directories); all or nothing."""
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files.extend(sorted([*p.glob("*.yaml"), *p.glob("*.yml")]))
        elif p.exists():
            files.append(p)
        else:
            raise DefinitionError(f"{p}: no such file or directory")
    if not files:
        raise DefinitionError(f"{', '.join(map(str, paths))}: no .yaml files found")
    experiments = [load_experiment_file(f) for f in files]
    seen: dict[str, Path] = {}
    for f, e in zip(files, experiments, strict=True):
        if e.key in seen:
            raise DefinitionError(f"{f}: key: '{e.key}' is also defined in {seen[e.key]}")
        seen[e.key] = f
    return experiments
