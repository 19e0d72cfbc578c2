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

-- name: cohorts
-- first day and segment of each cohort: bound values (abflow/cohorts.py); plan.py puts this
-- block in front of the statements below as the CTE exposure_age_cohorts
select 0 as cohort, cast(:cohort_0_day as integer) as first_day,
    cast(:cohort_0_segment as text) as segment
union all
select 1 as cohort, cast(:cohort_1_day as integer) as first_day,
    cast(:cohort_1_segment as text) as segment
union all
select 2 as cohort, cast(:cohort_2_day as integer) as first_day,
    cast(:cohort_2_segment as text) as segment
union all
select 3 as cohort, cast(:cohort_3_day as integer) as first_day,
    cast(:cohort_3_segment as text) as segment

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
    select
        unit_id || ':0' as unit_id,
        variant_key,
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
        variant_key,
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
        variant_key,
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
        variant_key,
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
        case when in_0 then y_0 end as y_0,
        case when in_0 then x_0 end as x_0,
        case when in_1 then y_1 end as y_1,
        case when in_1 then x_1 end as x_1,
        case when in_2 then y_2 end as y_2,
        case when in_2 then x_2 end as x_2,
        case when in_3 then y_3 end as y_3,
        case when in_3 then x_3 end as x_3
    from abflow_unit_values
),

final as (
    select
        metric_id,
        variant_key,
        count(y_0) as units_0,
        sum(y_0) as sum_0,
        sum(y_0 * y_0) as sum_squares_0,
        sum(x_0) as denominator_sum_0,
        sum(x_0 * x_0) as denominator_sum_squares_0,
        sum(x_0 * y_0) as sum_products_0,
        count(y_1) as units_1,
        sum(y_1) as sum_1,
        sum(y_1 * y_1) as sum_squares_1,
        sum(x_1) as denominator_sum_1,
        sum(x_1 * x_1) as denominator_sum_squares_1,
        sum(x_1 * y_1) as sum_products_1,
        count(y_2) as units_2,
        sum(y_2) as sum_2,
        sum(y_2 * y_2) as sum_squares_2,
        sum(x_2) as denominator_sum_2,
        sum(x_2 * x_2) as denominator_sum_squares_2,
        sum(x_2 * y_2) as sum_products_2,
        count(y_3) as units_3,
        sum(y_3) as sum_3,
        sum(y_3 * y_3) as sum_squares_3,
        sum(x_3) as denominator_sum_3,
        sum(x_3 * x_3) as denominator_sum_squares_3,
        sum(x_3 * y_3) as sum_products_3
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
    case c.cohort when 0 then s.units_0 when 1 then s.units_1 when 2 then s.units_2
        else s.units_3 end as units,
    case c.cohort when 0 then s.sum_0 when 1 then s.sum_1 when 2 then s.sum_2
        else s.sum_3 end as sum,
    case c.cohort when 0 then s.sum_squares_0 when 1 then s.sum_squares_1
        when 2 then s.sum_squares_2 else s.sum_squares_3 end as sum_squares,
    case c.cohort when 0 then s.denominator_sum_0 when 1 then s.denominator_sum_1
        when 2 then s.denominator_sum_2 else s.denominator_sum_3 end as denominator_sum,
    case c.cohort when 0 then s.denominator_sum_squares_0 when 1 then s.denominator_sum_squares_1
        when 2 then s.denominator_sum_squares_2 else s.denominator_sum_squares_3 end
        as denominator_sum_squares,
    case c.cohort when 0 then s.sum_products_0 when 1 then s.sum_products_1
        when 2 then s.sum_products_2 else s.sum_products_3 end as sum_products,
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
-- units per arm and cohort: exposed for the cohort's first day by as_of
select u.variant_key, c.segment, count(*) as exposed_units
from abflow_units as u
cross join exposure_age_cohorts as c
where u.first_exposed_at + c.first_day * interval '1 day' <= :as_of
group by u.variant_key, c.segment
