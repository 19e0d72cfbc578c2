-- Novelty and primacy: the experiment's metrics by days since each unit's first exposure, in
-- cohorts of days 0-6, 7-13, 14-20 and 21+. abflow/warehouse/plan.py runs metric_final.sql (the
-- same final step as the means) over these two relations: each (unit, cohort) is a pseudo-unit
-- `unit_id:cohort`, and the cohort is its segment ('@exposure_age=0-6'; '@' never starts a
-- configured segment). A unit belongs to a cohort once it has been exposed for the cohort's first
-- day by as_of; its events in that week since exposure make its value, and without events it
-- holds 0 for any/sum/count metrics, as in the means.
--
-- No events are read here: the one pass (metric_stats.sql, or incremental_stats.sql from the
-- stored partials) already keeps each unit's cohort values y_k, x_k and whether it has a row in
-- cohort k (in_k) in the stage abflow_unit_values; the values block unpivots them.

-- name: units
with

cohorts as (
    select 0 as cohort, 0 as first_day, '0-6' as label
    union all
    select 1 as cohort, 7 as first_day, '7-13' as label
    union all
    select 2 as cohort, 14 as first_day, '14-20' as label
    union all
    select 3 as cohort, 21 as first_day, '21+' as label
),

final as (
    select
        u.unit_id || ':' || cast(c.cohort as text) as unit_id,
        u.variant_key,
        '@exposure_age=' || c.label as segment
    from abflow_units as u
    cross join cohorts as c
    where u.first_exposed_at + c.first_day * interval '1 day' <= :as_of
)

select * from final

-- name: values
with

final as (
    -- per (unit, cohort) values; no CUPED covariate, no contamination flag by cohort
    select
        unit_id || ':0' as unit_id,
        metric_id,
        y_0 as y,
        x_0 as x,
        cast(null as double precision) as c,
        cast(null as double precision) as d,
        false as contaminated
    from abflow_unit_values
    where in_0
    union all
    select
        unit_id || ':1' as unit_id,
        metric_id,
        y_1 as y,
        x_1 as x,
        cast(null as double precision) as c,
        cast(null as double precision) as d,
        false as contaminated
    from abflow_unit_values
    where in_1
    union all
    select
        unit_id || ':2' as unit_id,
        metric_id,
        y_2 as y,
        x_2 as x,
        cast(null as double precision) as c,
        cast(null as double precision) as d,
        false as contaminated
    from abflow_unit_values
    where in_2
    union all
    select
        unit_id || ':3' as unit_id,
        metric_id,
        y_3 as y,
        x_3 as x,
        cast(null as double precision) as c,
        cast(null as double precision) as d,
        false as contaminated
    from abflow_unit_values
    where in_3
)

select * from final
