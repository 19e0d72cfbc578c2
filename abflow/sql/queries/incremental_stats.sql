-- Incremental refresh, step 2: per-unit values from the sealed partials (unit_metric_partials)
-- merged with the events just read (abflow_read_partials, incremental_read.sql), in the shape of
-- metric_stats.sql's output, so the same final step (metric_final.sql) turns them into
-- sufficient statistics. Runs before the seal step, so nothing is counted twice.

{% from "macros.sql" import cohort_sides, partial_columns, unit_value, cohort_values %}

{#- One group's partials, sealed (s) and just read (r), merged: counts and sums add up, maxima
    take the maximum, mean = sum / count of values. -#}
{% macro merged(group) -%}
coalesce(s.{{ group }}_count, 0) + coalesce(r.{{ group }}_count, 0) as {{ group }}_count,
coalesce(s.{{ group }}_sum, 0.0) + coalesce(r.{{ group }}_sum, 0.0) as {{ group }}_sum,
(coalesce(s.{{ group }}_sum, 0.0) + coalesce(r.{{ group }}_sum, 0.0))
    / nullif(cast(coalesce(s.{{ group }}_value_count, 0)
        + coalesce(r.{{ group }}_value_count, 0) as double precision), 0.0)
    as {{ group }}_mean,
greatest(s.{{ group }}_max, r.{{ group }}_max) as {{ group }}_max
{%- endmacro %}

with

sealed_partials as (
    select *
    from unit_metric_partials
    where experiment_key = :experiment_key
),

read_unit_partials as (
    -- the events just read per unit and metric, sealed part or not
    select
        unit_id,
        metric_key,
        {% for column in partial_columns %}
        {{ "max" if column.endswith("_max") else "sum" }}({{ column }}) as {{ column }}
        {{- "," if not loop.last }}
        {% endfor %}
    from abflow_read_partials
    group by unit_id, metric_key
),

unit_events as (
    -- sealed partials (one row per unit and metric) merged with what was just read: counts and
    -- sums add up, maxima take the maximum, mean = sum / count of values. A join, not a GROUP
    -- BY over both, so the large sealed side is never sorted or hashed into groups.
    select
        coalesce(s.unit_id, r.unit_id) as unit_id,
        coalesce(s.metric_key, r.metric_key) as metric_key,
        {% for group in ["num", "den", "pre", "den_pre"] %}
        {{ merged(group) }},
        {% endfor %}
        coalesce(s.contaminated_count, 0) + coalesce(r.contaminated_count, 0)
            as contaminated_count,
        coalesce(s.c0_rows, 0) + coalesce(r.c0_rows, 0) as c0_rows,
        {% for group, side, k in cohort_sides %}
        {{ merged(group) }}{{ "," if not loop.last }}
        {% endfor %}
    from sealed_partials as s
    full outer join read_unit_partials as r
        on r.unit_id = s.unit_id
        and r.metric_key = s.metric_key
),

metric_aggs as (
    select distinct metric_id, metric_key, y_agg, x_agg, c_agg, d_agg
    from abflow_metric_events
),

final as (
    -- one row per analysed (unit, metric) with a partial, as in metric_stats.sql (with the
    -- unit's variant, and its cohorts 1-3 only once it has been exposed for their first day)
    select
        ue.unit_id,
        u.variant_key,
        m.metric_id,
        {{ unit_value("m.y_agg", "ue", "num", merged=true) }} as y,
        {{ unit_value("m.x_agg", "ue", "den", any=false, merged=true) }} as x,
        {{ unit_value("m.c_agg", "ue", "pre", merged=true, fill=true) }} as c,
        {{ unit_value("m.d_agg", "ue", "den_pre", any=false, merged=true, fill=true) }} as d,
        ue.contaminated_count > 0 as contaminated,
        -- the exposure-age cohorts as metric_stats.sql keeps them (exposure_age.sql unpivots)
        {{ cohort_values("ue", "u.first_exposed_at", merged=true) }}
    from unit_events as ue
    inner join abflow_units as u on u.unit_id = ue.unit_id
    inner join metric_aggs as m on m.metric_key = ue.metric_key
)

select * from final
