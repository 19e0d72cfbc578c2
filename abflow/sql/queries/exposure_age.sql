-- Novelty and primacy: the experiment's metrics by days since each unit's first exposure, in
-- cohorts of days 0-6, 7-13, 14-20 and 21+ (abflow/cohorts.py: their first days and segment
-- names are bound values, :cohort_k_day and :cohort_k_segment, here and in the one pass).
-- abflow/warehouse/plan.py runs metric_final.sql (the same final step as the means) over these
-- two relations: each (unit, cohort) is a pseudo-unit `unit_id:cohort`, and the cohort is its
-- segment ('@exposure_age=0-6'; '@' never starts a configured segment). A unit belongs to a
-- cohort once it has been exposed for the cohort's first day by as_of; its events in that week
-- since exposure make its value, and without events it holds 0 for any/sum/count metrics, as in
-- the means.
--
-- No events are read here: the one pass (metric_stats.sql, or incremental_stats.sql from the
-- stored partials) already keeps each unit's cohort values y_k, x_k and whether it has a row in
-- cohort k (in_k) in the stage abflow_unit_values; the values block unpivots them.

{% from "macros.sql" import cohorts, of_cohort %}

-- name: cohorts
-- first day and segment of each cohort: bound values (abflow/cohorts.py); plan.py puts this
-- block in front of the statements below as the CTE exposure_age_cohorts
{% for k in cohorts %}
select {{ k }} as cohort, cast(:cohort_{{ k }}_day as integer) as first_day,
    cast(:cohort_{{ k }}_segment as text) as segment
{{ "union all" if not loop.last }}
{% endfor %}

-- name: units
select
    u.unit_id || ':' || cast(c.cohort as text) as unit_id,
    u.variant_key,
    c.segment
from abflow_units as u
cross join exposure_age_cohorts as c
where u.first_exposed_at + c.first_day * interval '1 day' <= :as_of

-- name: values
with

final as (
    -- per (unit, cohort) values; no CUPED covariate, no contamination flag by cohort
    {% for k in cohorts %}
    select
        unit_id || ':{{ k }}' as unit_id,
        variant_key,
        metric_id,
        y_{{ k }} as y,
        x_{{ k }} as x,
        cast(null as double precision) as c,
        cast(null as double precision) as d,
        false as contaminated
    from abflow_unit_values
    where in_{{ k }}
    {{ "union all" if not loop.last }}
    {% endfor %}
)

select * from final

-- The blocks below replace two CTEs of metric_final.sql when no metric is capped
-- (plan.exposure_age_statement): the per-(metric, arm, cohort) sums come from one aggregation
-- of the stage's cohort columns, and the exposed units from abflow_units, without materialising
-- a pseudo-unit per (unit, cohort) and joining 4x as many rows by a text key (1.25 s -> ~0.2 s
-- at 1M benchmark events). The sums are those value_sums computes over the pseudo-units: a unit
-- counts in cohort k where it has a cohort-k row (in_k) and has been exposed for the cohort's
-- first day by as_of; no covariates or contamination by cohort. Capped metrics need the clamped
-- per-unit values, so with capping the pseudo-unit form above runs instead.

-- name: sums
with

cohort_values as (
    -- each unit's value in cohort k; NULL where it does not count there (in_k already requires
    -- the unit to have been exposed for the cohort's first day by as_of)
    select
        metric_id,
        variant_key,
        {% for k in cohorts %}
        case when in_{{ k }} then y_{{ k }} end as y_{{ k }},
        case when in_{{ k }} then x_{{ k }} end as x_{{ k }}{{ "," if not loop.last }}
        {% endfor %}
    from abflow_unit_values
),

final as (
    select
        metric_id,
        variant_key,
        {% for k in cohorts %}
        count(y_{{ k }}) as units_{{ k }},
        sum(y_{{ k }}) as sum_{{ k }},
        sum(y_{{ k }} * y_{{ k }}) as sum_squares_{{ k }},
        sum(x_{{ k }}) as denominator_sum_{{ k }},
        sum(x_{{ k }} * x_{{ k }}) as denominator_sum_squares_{{ k }},
        sum(x_{{ k }} * y_{{ k }}) as sum_products_{{ k }}{{ "," if not loop.last }}
        {% endfor %}
    from cohort_values
    group by metric_id, variant_key
)

select * from final

-- name: value_sums
-- the sums above, one row per cohort, in the columns of metric_final.sql's value_sums
select
    s.metric_id,
    false as capped,
    s.variant_key,
    c.segment,
    {% for column in ["units", "sum", "sum_squares", "denominator_sum",
        "denominator_sum_squares", "sum_products"] %}
    {{ of_cohort("s", column) }} as {{ column }},
    {% endfor %}
    cast(null as double precision) as covariate_sum,
    cast(null as double precision) as covariate_sum_squares,
    cast(null as double precision) as covariate_sum_products,
    cast(null as double precision) as denominator_covariate_sum,
    cast(null as double precision) as denominator_covariate_sum_squares,
    cast(null as double precision) as denominator_covariate_sum_products,
    cast(null as double precision) as covariate_cross_sum_products,
    cast(null as double precision) as numerator_denominator_covariate_sum_products,
    cast(null as double precision) as covariate_denominator_sum_products,
    cast(0 as bigint) as contaminated_units
from exposure_age_sums as s
cross join exposure_age_cohorts as c

-- name: exposed
-- units per arm and cohort: exposed for the cohort's first day by as_of (arms and cohorts without
-- such units have no row). One pass over the units counting every cohort, then one row per
-- cohort: a cross join with the cohorts first would classify and group 4x the units by a text
-- key (0.72 of this statement's 1.48 s at 5M benchmark events).
select variant_key, segment, exposed_units
from (
    select
        e.variant_key,
        c.segment,
        {{ of_cohort("e", "exposed") }} as exposed_units
    from (
        select
            variant_key,
            {% for k in cohorts %}
            count(*) filter (
                where first_exposed_at + cast(:cohort_{{ k }}_day as integer) * interval '1 day'
                    <= :as_of
            ) as exposed_{{ k }}{{ "," if not loop.last }}
            {% endfor %}
        from abflow_units
        group by variant_key
    ) as e
    cross join exposure_age_cohorts as c
) as by_cohort
where exposed_units > 0
