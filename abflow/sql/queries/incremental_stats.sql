-- Incremental refresh, step 2: per-unit values from the sealed partials (unit_metric_partials)
-- merged with the events just read (abflow_read_partials, incremental_read.sql), in the shape of
-- metric_stats.sql's output, so the same final step (metric_final.sql) turns them into
-- sufficient statistics. Runs before the seal step, so nothing is counted twice.

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
        sum(num_count) as num_count,
        sum(num_value_count) as num_value_count,
        sum(num_sum) as num_sum,
        max(num_max) as num_max,
        sum(den_count) as den_count,
        sum(den_value_count) as den_value_count,
        sum(den_sum) as den_sum,
        max(den_max) as den_max,
        sum(pre_count) as pre_count,
        sum(pre_value_count) as pre_value_count,
        sum(pre_sum) as pre_sum,
        max(pre_max) as pre_max,
        sum(den_pre_count) as den_pre_count,
        sum(den_pre_value_count) as den_pre_value_count,
        sum(den_pre_sum) as den_pre_sum,
        max(den_pre_max) as den_pre_max,
        sum(contaminated_count) as contaminated_count,
        sum(c0_rows) as c0_rows,
        sum(c0_num_count) as c0_num_count,
        sum(c0_num_value_count) as c0_num_value_count,
        sum(c0_num_sum) as c0_num_sum,
        max(c0_num_max) as c0_num_max,
        sum(c0_den_count) as c0_den_count,
        sum(c0_den_value_count) as c0_den_value_count,
        sum(c0_den_sum) as c0_den_sum,
        max(c0_den_max) as c0_den_max,
        sum(c1_num_count) as c1_num_count,
        sum(c1_num_value_count) as c1_num_value_count,
        sum(c1_num_sum) as c1_num_sum,
        max(c1_num_max) as c1_num_max,
        sum(c1_den_count) as c1_den_count,
        sum(c1_den_value_count) as c1_den_value_count,
        sum(c1_den_sum) as c1_den_sum,
        max(c1_den_max) as c1_den_max,
        sum(c2_num_count) as c2_num_count,
        sum(c2_num_value_count) as c2_num_value_count,
        sum(c2_num_sum) as c2_num_sum,
        max(c2_num_max) as c2_num_max,
        sum(c2_den_count) as c2_den_count,
        sum(c2_den_value_count) as c2_den_value_count,
        sum(c2_den_sum) as c2_den_sum,
        max(c2_den_max) as c2_den_max,
        sum(c3_num_count) as c3_num_count,
        sum(c3_num_value_count) as c3_num_value_count,
        sum(c3_num_sum) as c3_num_sum,
        max(c3_num_max) as c3_num_max,
        sum(c3_den_count) as c3_den_count,
        sum(c3_den_value_count) as c3_den_value_count,
        sum(c3_den_sum) as c3_den_sum,
        max(c3_den_max) as c3_den_max
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
        coalesce(s.num_count, 0) + coalesce(r.num_count, 0) as num_count,
        coalesce(s.num_sum, 0.0) + coalesce(r.num_sum, 0.0) as num_sum,
        (coalesce(s.num_sum, 0.0) + coalesce(r.num_sum, 0.0))
            / nullif(cast(coalesce(s.num_value_count, 0) + coalesce(r.num_value_count, 0)
                as double precision), 0.0)
            as num_mean,
        greatest(s.num_max, r.num_max) as num_max,
        coalesce(s.den_count, 0) + coalesce(r.den_count, 0) as den_count,
        coalesce(s.den_sum, 0.0) + coalesce(r.den_sum, 0.0) as den_sum,
        (coalesce(s.den_sum, 0.0) + coalesce(r.den_sum, 0.0))
            / nullif(cast(coalesce(s.den_value_count, 0) + coalesce(r.den_value_count, 0)
                as double precision), 0.0)
            as den_mean,
        greatest(s.den_max, r.den_max) as den_max,
        coalesce(s.pre_count, 0) + coalesce(r.pre_count, 0) as pre_count,
        coalesce(s.pre_sum, 0.0) + coalesce(r.pre_sum, 0.0) as pre_sum,
        (coalesce(s.pre_sum, 0.0) + coalesce(r.pre_sum, 0.0))
            / nullif(cast(coalesce(s.pre_value_count, 0) + coalesce(r.pre_value_count, 0)
                as double precision), 0.0)
            as pre_mean,
        greatest(s.pre_max, r.pre_max) as pre_max,
        coalesce(s.den_pre_count, 0) + coalesce(r.den_pre_count, 0) as den_pre_count,
        coalesce(s.den_pre_sum, 0.0) + coalesce(r.den_pre_sum, 0.0) as den_pre_sum,
        (coalesce(s.den_pre_sum, 0.0) + coalesce(r.den_pre_sum, 0.0))
            / nullif(cast(coalesce(s.den_pre_value_count, 0) + coalesce(r.den_pre_value_count, 0)
                as double precision), 0.0)
            as den_pre_mean,
        greatest(s.den_pre_max, r.den_pre_max) as den_pre_max,
        coalesce(s.contaminated_count, 0) + coalesce(r.contaminated_count, 0)
            as contaminated_count,
        coalesce(s.c0_rows, 0) + coalesce(r.c0_rows, 0) as c0_rows,
        coalesce(s.c0_num_count, 0) + coalesce(r.c0_num_count, 0) as c0_num_count,
        coalesce(s.c0_num_sum, 0.0) + coalesce(r.c0_num_sum, 0.0) as c0_num_sum,
        (coalesce(s.c0_num_sum, 0.0) + coalesce(r.c0_num_sum, 0.0))
            / nullif(cast(coalesce(s.c0_num_value_count, 0)
                + coalesce(r.c0_num_value_count, 0) as double precision), 0.0)
            as c0_num_mean,
        greatest(s.c0_num_max, r.c0_num_max) as c0_num_max,
        coalesce(s.c0_den_count, 0) + coalesce(r.c0_den_count, 0) as c0_den_count,
        coalesce(s.c0_den_sum, 0.0) + coalesce(r.c0_den_sum, 0.0) as c0_den_sum,
        (coalesce(s.c0_den_sum, 0.0) + coalesce(r.c0_den_sum, 0.0))
            / nullif(cast(coalesce(s.c0_den_value_count, 0)
                + coalesce(r.c0_den_value_count, 0) as double precision), 0.0)
            as c0_den_mean,
        greatest(s.c0_den_max, r.c0_den_max) as c0_den_max,
        coalesce(s.c1_num_count, 0) + coalesce(r.c1_num_count, 0) as c1_num_count,
        coalesce(s.c1_num_sum, 0.0) + coalesce(r.c1_num_sum, 0.0) as c1_num_sum,
        (coalesce(s.c1_num_sum, 0.0) + coalesce(r.c1_num_sum, 0.0))
            / nullif(cast(coalesce(s.c1_num_value_count, 0)
                + coalesce(r.c1_num_value_count, 0) as double precision), 0.0)
            as c1_num_mean,
        greatest(s.c1_num_max, r.c1_num_max) as c1_num_max,
        coalesce(s.c1_den_count, 0) + coalesce(r.c1_den_count, 0) as c1_den_count,
        coalesce(s.c1_den_sum, 0.0) + coalesce(r.c1_den_sum, 0.0) as c1_den_sum,
        (coalesce(s.c1_den_sum, 0.0) + coalesce(r.c1_den_sum, 0.0))
            / nullif(cast(coalesce(s.c1_den_value_count, 0)
                + coalesce(r.c1_den_value_count, 0) as double precision), 0.0)
            as c1_den_mean,
        greatest(s.c1_den_max, r.c1_den_max) as c1_den_max,
        coalesce(s.c2_num_count, 0) + coalesce(r.c2_num_count, 0) as c2_num_count,
        coalesce(s.c2_num_sum, 0.0) + coalesce(r.c2_num_sum, 0.0) as c2_num_sum,
        (coalesce(s.c2_num_sum, 0.0) + coalesce(r.c2_num_sum, 0.0))
            / nullif(cast(coalesce(s.c2_num_value_count, 0)
                + coalesce(r.c2_num_value_count, 0) as double precision), 0.0)
            as c2_num_mean,
        greatest(s.c2_num_max, r.c2_num_max) as c2_num_max,
        coalesce(s.c2_den_count, 0) + coalesce(r.c2_den_count, 0) as c2_den_count,
        coalesce(s.c2_den_sum, 0.0) + coalesce(r.c2_den_sum, 0.0) as c2_den_sum,
        (coalesce(s.c2_den_sum, 0.0) + coalesce(r.c2_den_sum, 0.0))
            / nullif(cast(coalesce(s.c2_den_value_count, 0)
                + coalesce(r.c2_den_value_count, 0) as double precision), 0.0)
            as c2_den_mean,
        greatest(s.c2_den_max, r.c2_den_max) as c2_den_max,
        coalesce(s.c3_num_count, 0) + coalesce(r.c3_num_count, 0) as c3_num_count,
        coalesce(s.c3_num_sum, 0.0) + coalesce(r.c3_num_sum, 0.0) as c3_num_sum,
        (coalesce(s.c3_num_sum, 0.0) + coalesce(r.c3_num_sum, 0.0))
            / nullif(cast(coalesce(s.c3_num_value_count, 0)
                + coalesce(r.c3_num_value_count, 0) as double precision), 0.0)
            as c3_num_mean,
        greatest(s.c3_num_max, r.c3_num_max) as c3_num_max,
        coalesce(s.c3_den_count, 0) + coalesce(r.c3_den_count, 0) as c3_den_count,
        coalesce(s.c3_den_sum, 0.0) + coalesce(r.c3_den_sum, 0.0) as c3_den_sum,
        (coalesce(s.c3_den_sum, 0.0) + coalesce(r.c3_den_sum, 0.0))
            / nullif(cast(coalesce(s.c3_den_value_count, 0)
                + coalesce(r.c3_den_value_count, 0) as double precision), 0.0)
            as c3_den_mean,
        greatest(s.c3_den_max, r.c3_den_max) as c3_den_max
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
        case m.y_agg
            when 'any' then case when ue.num_count > 0 then 1.0 else 0.0 end
            when 'sum' then ue.num_sum
            when 'count' then cast(ue.num_count as double precision)
            when 'mean' then ue.num_mean
            when 'max' then ue.num_max
        end as y,
        case m.x_agg
            when 'sum' then ue.den_sum
            when 'count' then cast(ue.den_count as double precision)
            when 'mean' then ue.den_mean
            when 'max' then ue.den_max
        end as x,
        case m.c_agg
            when 'any' then case when ue.pre_count > 0 then 1.0 else 0.0 end
            when 'sum' then ue.pre_sum
            when 'count' then cast(ue.pre_count as double precision)
            when 'mean' then coalesce(ue.pre_mean, 0.0)
            when 'max' then coalesce(ue.pre_max, 0.0)
        end as c,
        case m.d_agg
            when 'sum' then ue.den_pre_sum
            when 'count' then cast(ue.den_pre_count as double precision)
            when 'mean' then coalesce(ue.den_pre_mean, 0.0)
            when 'max' then coalesce(ue.den_pre_max, 0.0)
        end as d,
        ue.contaminated_count > 0 as contaminated,
        -- the exposure-age cohorts as metric_stats.sql keeps them (exposure_age.sql unpivots)
        ue.c0_rows > 0 as in_0,
        case m.y_agg
            when 'any' then case when ue.c0_num_count > 0 then 1.0 else 0.0 end
            when 'sum' then ue.c0_num_sum
            when 'count' then cast(ue.c0_num_count as double precision)
            when 'mean' then ue.c0_num_mean
            when 'max' then ue.c0_num_max
        end as y_0,
        case m.x_agg
            when 'sum' then ue.c0_den_sum
            when 'count' then cast(ue.c0_den_count as double precision)
            when 'mean' then ue.c0_den_mean
            when 'max' then ue.c0_den_max
        end as x_0,
        ue.c1_num_count + ue.c1_den_count > 0
            and u.first_exposed_at + cast(:cohort_1_day as integer) * interval '1 day'
                <= :as_of as in_1,
        case m.y_agg
            when 'any' then case when ue.c1_num_count > 0 then 1.0 else 0.0 end
            when 'sum' then ue.c1_num_sum
            when 'count' then cast(ue.c1_num_count as double precision)
            when 'mean' then ue.c1_num_mean
            when 'max' then ue.c1_num_max
        end as y_1,
        case m.x_agg
            when 'sum' then ue.c1_den_sum
            when 'count' then cast(ue.c1_den_count as double precision)
            when 'mean' then ue.c1_den_mean
            when 'max' then ue.c1_den_max
        end as x_1,
        ue.c2_num_count + ue.c2_den_count > 0
            and u.first_exposed_at + cast(:cohort_2_day as integer) * interval '1 day'
                <= :as_of as in_2,
        case m.y_agg
            when 'any' then case when ue.c2_num_count > 0 then 1.0 else 0.0 end
            when 'sum' then ue.c2_num_sum
            when 'count' then cast(ue.c2_num_count as double precision)
            when 'mean' then ue.c2_num_mean
            when 'max' then ue.c2_num_max
        end as y_2,
        case m.x_agg
            when 'sum' then ue.c2_den_sum
            when 'count' then cast(ue.c2_den_count as double precision)
            when 'mean' then ue.c2_den_mean
            when 'max' then ue.c2_den_max
        end as x_2,
        ue.c3_num_count + ue.c3_den_count > 0
            and u.first_exposed_at + cast(:cohort_3_day as integer) * interval '1 day'
                <= :as_of as in_3,
        case m.y_agg
            when 'any' then case when ue.c3_num_count > 0 then 1.0 else 0.0 end
            when 'sum' then ue.c3_num_sum
            when 'count' then cast(ue.c3_num_count as double precision)
            when 'mean' then ue.c3_num_mean
            when 'max' then ue.c3_num_max
        end as y_3,
        case m.x_agg
            when 'sum' then ue.c3_den_sum
            when 'count' then cast(ue.c3_den_count as double precision)
            when 'mean' then ue.c3_den_mean
            when 'max' then ue.c3_den_max
        end as x_3
    from unit_events as ue
    inner join abflow_units as u on u.unit_id = ue.unit_id
    inner join metric_aggs as m on m.metric_key = ue.metric_key
)

select * from final
