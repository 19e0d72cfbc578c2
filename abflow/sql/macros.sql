{#-
Shared pieces of the query files, as Jinja macros (the way dbt projects share SQL): a query file
imports them with {% from "macros.sql" import ... %} and abflow.warehouse.sqlfiles.query_sql
expands them before sqlglot parses the text. They only repeat column lists and expressions;
no value or user-given name passes through here (values stay bound parameters).
-#}

{#- The exposure-age cohorts: days 0-6, 7-13, 14-20 and 21+ since the unit's first exposure. -#}
{% set cohorts = [0, 1, 2, 3] %}

{#- Per cohort its numerator and denominator sides: ("c0_num", "num", 0), ("c0_den", "den", 0), ...
-#}
{% set cohort_sides = [] %}
{% for k in cohorts %}
{% for side in ["num", "den"] %}
{% set _ = cohort_sides.append(("c%d_%s" % (k, side), side, k)) %}
{% endfor %}
{% endfor %}

{#- The columns of unit_metric_partials after its key (migrations 004, 012, 014), in the order the
    queries list them: per group of events its mergeable aggregates (count, count of values, sum,
    max), the contamination count and cohort 0's rows. -#}
{% set partial_columns = [] %}
{% for group in ["num", "den", "pre", "den_pre"] %}
{% for stat in ["count", "value_count", "sum", "max"] %}
{% set _ = partial_columns.append(group ~ "_" ~ stat) %}
{% endfor %}
{% endfor %}
{% set _ = partial_columns.extend(["contaminated_count", "c0_rows"]) %}
{% for group, side, k in cohort_sides %}
{% for stat in ["count", "value_count", "sum", "max"] %}
{% set _ = partial_columns.append(group ~ "_" ~ stat) %}
{% endfor %}
{% endfor %}

{#- The mergeable aggregates of the events matching `condition`, named <group>_<aggregate>;
    `zero_sum`: a sum over no events is 0.0 (stored partials) rather than NULL. -#}
{% macro partial_aggregates(group, condition, zero_sum=true) -%}
count(*) filter (where {{ condition }}) as {{ group }}_count,
count(value) filter (where {{ condition }}) as {{ group }}_value_count,
{% if zero_sum %}
coalesce(sum(value) filter (where {{ condition }}), 0.0) as {{ group }}_sum,
{% else %}
sum(value) filter (where {{ condition }}) as {{ group }}_sum,
{% endif %}
max(value) filter (where {{ condition }}) as {{ group }}_max
{%- endmacro %}

{#- A unit's value of a metric from the aggregates <t>.<group>_*, by the metric's aggregation
    `agg` ('any', 'sum', 'count', 'mean', 'max'). `merged`: the sums are already 0.0 when there
    were no events; `fill`: a missing mean or max is 0 (CUPED covariates, Deng et al. 2013);
    `mean_from_sum`: the mean is sum / count of values (as avg computes it), not a column. -#}
{% macro unit_value(agg, t, group, any=true, merged=false, fill=false, mean_from_sum=false) -%}
{% if mean_from_sum %}
{% set mean = "%s.%s_sum / nullif(cast(%s.%s_value_count as double precision), 0.0)"
    % (t, group, t, group) %}
{% else %}
{% set mean = "%s.%s_mean" % (t, group) %}
{% endif %}
{% set maximum = "%s.%s_max" % (t, group) %}
case {{ agg }}
{% if any %}
    when 'any' then case when {{ t }}.{{ group }}_count > 0 then 1.0 else 0.0 end
{% endif %}
{% set total = "%s.%s_sum" % (t, group) %}
    when 'sum' then {{ total if merged else "coalesce(%s, 0.0)" % total }}
    when 'count' then cast({{ t }}.{{ group }}_count as double precision)
    when 'mean' then {{ "coalesce(%s, 0.0)" % mean if fill else mean }}
    when 'max' then {{ "coalesce(%s, 0.0)" % maximum if fill else maximum }}
end
{%- endmacro %}

{#- The exposure-age cohort columns of a (unit, metric) row from the aggregates <t>.c<k>_*:
    in_k, whether the unit has a row in cohort k (cohorts 1-3 only once the unit has been
    exposed for their first day), and its value y_k and denominator x_k, aggregated as y and x
    are. `exposed_at`: the unit's first exposure. -#}
{% macro cohort_values(t, exposed_at, merged=false) -%}
{% for k in cohorts %}
{% if k == 0 %}
{{ t }}.c0_rows > 0 as in_0,
{% else %}
{{ t }}.c{{ k }}_num_count + {{ t }}.c{{ k }}_den_count > 0
    and {{ exposed_at }} + cast(:cohort_{{ k }}_day as integer) * interval '1 day'
        <= :as_of as in_{{ k }},
{% endif %}
{{ unit_value("m.y_agg", t, "c%d_num" % k, merged=merged, mean_from_sum=not merged) }}
    as y_{{ k }},
{{ unit_value("m.x_agg", t, "c%d_den" % k, any=false, merged=merged, mean_from_sum=not merged) }}
    as x_{{ k }}{{ "," if not loop.last }}
{% endfor %}
{%- endmacro %}

{#- One row per cohort from per-cohort columns <t>.<column>_<k>: the column of the row's cohort,
    picked by the cohorts relation `c` it is cross-joined with (its column `cohort`). -#}
{% macro of_cohort(t, column) -%}
case c.cohort
    {% for k in cohorts[:-1] %}
    when {{ k }} then {{ t }}.{{ column }}_{{ k }}
    {% endfor %}
    else {{ t }}.{{ column }}_{{ cohorts[-1] }}
end
{%- endmacro %}

{#- An event's exposure-age cohort k (0: days 0-6 since exposure ... 3: day 21 on); 4 before
    exposure but after the start (such rows make the unit's cohort-0 row without adding to its
    values); -1 otherwise, or when the experiment has no exposure-age analysis. -#}
{% macro exposure_cohort(occurred_at, exposed_at) -%}
case
    when cast(:exposure_age as integer) = 0 then -1
    when {{ occurred_at }} < least({{ exposed_at }}, :start_at) then -1
    when {{ occurred_at }} < {{ exposed_at }} then 4
    {% for k in cohorts[1:] %}
    when {{ occurred_at }}
        < {{ exposed_at }} + cast(:cohort_{{ k }}_day as integer) * interval '1 day'
        then {{ k - 1 }}
    {% endfor %}
    else {{ cohorts[-1] }}
end
{%- endmacro %}

{#- An event's phase relative to the unit's first exposure `exposed_at`: post (on or after it),
    in_lookback (in the CUPED lookback before it), early (before it but after the start:
    contamination), and its exposure-age cohort (exposure_cohort above). -#}
{% macro phases(occurred_at, exposed_at) -%}
{{ occurred_at }} >= {{ exposed_at }} as post,
{{ occurred_at }} < {{ exposed_at }}
    and {{ occurred_at }} >= {{ exposed_at }} - cast(:lookback_days as integer) * interval '1 day'
    as in_lookback,
{{ occurred_at }} < {{ exposed_at }} and {{ occurred_at }} >= :start_at as early,
{{ exposure_cohort(occurred_at, exposed_at) }} as exposure_cohort
{%- endmacro %}

{#- An event's value as the analysis reads it: out of range (or NaN, ±Infinity) is a bad row,
    read as missing and never summed (its square would overflow); the GX check
    value_finite_in_range reports it. -#}
{% macro read_value(e) -%}
case when abs({{ e }}.value) <= :value_limit then {{ e }}.value end
{%- endmacro %}

{#- The events that can matter to a unit: from its CUPED lookback before exposure, or from the
    start if that is earlier (contamination). -#}
{% macro from_lookback(occurred_at, exposed_at) -%}
{{ occurred_at }} >= least(
    {{ exposed_at }} - cast(:lookback_days as integer) * interval '1 day', :start_at
)
{%- endmacro %}

{#- Whether metric m reads an event at this instant: within the metric's window after exposure. -#}
{% macro in_window(m, occurred_at, exposed_at) -%}
(
    {{ m }}.window_seconds is null
    or {{ occurred_at }} < {{ exposed_at }} + {{ m }}.window_seconds * interval '1 second'
)
{%- endmacro %}

{#- Whether the event counts on metric m's `side` ('num' or 'den'): the metric reads it there
    and it passes that side's property filter. abflow_event_filter(metric, side, properties)
    stands for the filters: abflow/warehouse/plan.py replaces it with one predicate per side. -#}
{% macro on_side(m, side, properties) -%}
{{ m }}.is_{{ side }} and abflow_event_filter({{ m }}.metric_id, '{{ side }}', {{ properties }})
{%- endmacro %}
