-- Per-unit values of one experiment, in one pass over its events: one row per (unit, metric)
-- that has events, with the unit's value y, ratio denominator x, CUPED covariate c (ratios: of
-- the numerator), pre-exposure denominator d (ratio CUPED), contamination flag, and per
-- exposure-age cohort k (days 0-6, 7-13, 14-20, 21+ since exposure) whether the unit has a row
-- in it (in_k) and its value y_k and denominator x_k. metric_final.sql turns these rows into the
-- sufficient statistics (exposure_age.sql unpivots the cohorts for it); the incremental refresh
-- feeds the same final step from its merged partials (incremental_stats.sql, same columns).
-- Reads abflow_units (units.sql), abflow_metric_events (metric_events.sql) and the events source.
--
-- Shape (measured in benchmarks/, EXPLAIN at 5M events on PostgreSQL): the events scan joins
-- first exposures and the metric reads once by hash; duplicate removal and the per-(unit,
-- metric) aggregation share one sort (Sort -> Unique -> GroupAggregate, as a hand-written query
-- would). The unit's variant and first exposure ride along in the sort (one per unit, so they
-- split no group; +0.7 s at 5M events): the final step then sums the 'all' segment and the
-- exposure-age cohorts straight from these rows, without joining 1.4M rows back to the units
-- by a text key (~1 s per statement at 5M events). Only (unit, metric) pairs that have events
-- are aggregated, because a unit without events adds 0 (or NULL for mean/max) to every sum.
-- in_1..in_3 also require the unit to have been exposed for the cohort's first day by as_of.

with

unit_metric_events as (
    -- the single scan of events, joined to first exposures and to the metrics reading each
    -- event. Exact duplicate event rows count once: within one (unit, metric) an event is
    -- identified by (occurred_at, value, is_num, is_den) because the metric reads at most two
    -- event names, told apart by is_num / is_den. Only narrow keys go through the duplicate
    -- removal (no aggregation names: they depend on the metric and join back on 6 rows).
    -- abflow_event_filter(metric, side, properties) stands for the metrics' property filters:
    -- abflow/warehouse/plan.py replaces it with one predicate per side (values bound, property
    -- names as literal JSON paths), TRUE where no metric filters that side. An event counts on
    -- a side only if it passes that side's filter.
    -- (unit ids sort in byte order, collation "C": with the database's collation every
    -- comparison calls strcoll; dialects.py drops the COLLATE on other engines)
    select distinct
        u.unit_id collate "C" as unit_id,
        m.metric_id,
        u.first_exposed_at,
        e.occurred_at,
        -- a value out of range (or NaN, ±Infinity) is a bad row: read as missing, never summed
        -- (its square would overflow); the GX check value_finite_in_range reports it
        case when abs(e.value) <= :value_limit then e.value end as value,
        m.is_num and abflow_event_filter(m.metric_id, 'num', e.properties) as is_num,
        m.is_den and abflow_event_filter(m.metric_id, 'den', e.properties) as is_den,
        -- the event's phase relative to the unit's exposure, computed here once per row (this
        -- select's DISTINCT keeps them out of the aggregation; there, in the aggregates'
        -- FILTERs, each would be evaluated once per aggregate). They are functions of
        -- (first_exposed_at, occurred_at), so they change no duplicate.
        e.occurred_at >= u.first_exposed_at as post,
        e.occurred_at < u.first_exposed_at
            and e.occurred_at >= u.first_exposed_at - cast(:lookback_days as integer) * interval '1 day'
            as in_lookback,
        e.occurred_at < u.first_exposed_at and e.occurred_at >= :start_at as early,
        -- novelty/primacy cohort: week since the unit's first exposure (0: days 0-6 ... 3: day
        -- 21 on); 4 before exposure but after the start (such rows make the unit's cohort-0 row
        -- without adding to its values, as a lookback-free scan would); -1 otherwise or when
        -- the experiment has no exposure-age analysis (:exposure_age = 0)
        case
            when cast(:exposure_age as integer) = 0 then -1
            when e.occurred_at < least(u.first_exposed_at, :start_at) then -1
            when e.occurred_at < u.first_exposed_at then 4
            when e.occurred_at
                < u.first_exposed_at + cast(:cohort_1_day as integer) * interval '1 day' then 0
            when e.occurred_at
                < u.first_exposed_at + cast(:cohort_2_day as integer) * interval '1 day' then 1
            when e.occurred_at
                < u.first_exposed_at + cast(:cohort_3_day as integer) * interval '1 day' then 2
            else 3
        end as exposure_cohort,
        -- the unit's variant, last: it splits no row of the unit, so the sort never compares it
        u.variant_key collate "C" as variant_key
    from abflow_units as u
    inner join source_events as e
        on e.unit_id = u.unit_id
        and e.occurred_at <= :as_of
        and e.occurred_at >= least(
            u.first_exposed_at - cast(:lookback_days as integer) * interval '1 day', :start_at
        )
    inner join abflow_metric_events as m
        on m.event_name = e.event_name
        and (
            m.window_seconds is null
            or e.occurred_at < u.first_exposed_at + m.window_seconds * interval '1 second'
        )
    where
        (m.is_num and abflow_event_filter(m.metric_id, 'num', e.properties))
        or (m.is_den and abflow_event_filter(m.metric_id, 'den', e.properties))
),

phased_events as (
    -- each row's phase relative to the unit's exposure, per side
    select
        unit_id,
        variant_key,
        metric_id,
        first_exposed_at,
        value,
        is_num and post as num_post,
        is_den and post as den_post,
        is_num and in_lookback as num_pre,
        is_den and in_lookback as den_pre,
        is_num and early as num_early,
        is_num,
        is_den,
        exposure_cohort
    from unit_metric_events
),

unit_metric_aggregates as (
    -- every aggregate a metric may use, per (unit, metric) with events; the metric's own
    -- aggregation picks from them below
    select
        unit_id,
        metric_id,
        first_exposed_at,
        min(variant_key) as variant_key,
        count(*) filter (where num_post) as num_count,
        sum(value) filter (where num_post) as num_sum,
        avg(value) filter (where num_post) as num_mean,
        max(value) filter (where num_post) as num_max,
        count(*) filter (where den_post) as den_count,
        sum(value) filter (where den_post) as den_sum,
        avg(value) filter (where den_post) as den_mean,
        max(value) filter (where den_post) as den_max,
        count(*) filter (where num_pre) as pre_count,
        sum(value) filter (where num_pre) as pre_sum,
        avg(value) filter (where num_pre) as pre_mean,
        max(value) filter (where num_pre) as pre_max,
        count(*) filter (where den_pre) as den_pre_count,
        sum(value) filter (where den_pre) as den_pre_sum,
        avg(value) filter (where den_pre) as den_pre_mean,
        max(value) filter (where den_pre) as den_pre_max,
        count(*) filter (where num_early) as early_count,
        -- per exposure-age cohort k: its rows (any side; they make the unit's cohort row) and
        -- the numerator and denominator aggregates of its events (cohorts 0-3 are after
        -- exposure, so is_num there is num_post)
        count(*) filter (where exposure_cohort in (0, 4)) as c0_rows,
        count(*) filter (where is_num and exposure_cohort = 0) as c0_num_count,
        count(value) filter (where is_num and exposure_cohort = 0) as c0_num_value_count,
        sum(value) filter (where is_num and exposure_cohort = 0) as c0_num_sum,
        max(value) filter (where is_num and exposure_cohort = 0) as c0_num_max,
        count(*) filter (where is_den and exposure_cohort = 0) as c0_den_count,
        count(value) filter (where is_den and exposure_cohort = 0) as c0_den_value_count,
        sum(value) filter (where is_den and exposure_cohort = 0) as c0_den_sum,
        max(value) filter (where is_den and exposure_cohort = 0) as c0_den_max,
        count(*) filter (where is_num and exposure_cohort = 1) as c1_num_count,
        count(value) filter (where is_num and exposure_cohort = 1) as c1_num_value_count,
        sum(value) filter (where is_num and exposure_cohort = 1) as c1_num_sum,
        max(value) filter (where is_num and exposure_cohort = 1) as c1_num_max,
        count(*) filter (where is_den and exposure_cohort = 1) as c1_den_count,
        count(value) filter (where is_den and exposure_cohort = 1) as c1_den_value_count,
        sum(value) filter (where is_den and exposure_cohort = 1) as c1_den_sum,
        max(value) filter (where is_den and exposure_cohort = 1) as c1_den_max,
        count(*) filter (where is_num and exposure_cohort = 2) as c2_num_count,
        count(value) filter (where is_num and exposure_cohort = 2) as c2_num_value_count,
        sum(value) filter (where is_num and exposure_cohort = 2) as c2_num_sum,
        max(value) filter (where is_num and exposure_cohort = 2) as c2_num_max,
        count(*) filter (where is_den and exposure_cohort = 2) as c2_den_count,
        count(value) filter (where is_den and exposure_cohort = 2) as c2_den_value_count,
        sum(value) filter (where is_den and exposure_cohort = 2) as c2_den_sum,
        max(value) filter (where is_den and exposure_cohort = 2) as c2_den_max,
        count(*) filter (where is_num and exposure_cohort = 3) as c3_num_count,
        count(value) filter (where is_num and exposure_cohort = 3) as c3_num_value_count,
        sum(value) filter (where is_num and exposure_cohort = 3) as c3_num_sum,
        max(value) filter (where is_num and exposure_cohort = 3) as c3_num_max,
        count(*) filter (where is_den and exposure_cohort = 3) as c3_den_count,
        count(value) filter (where is_den and exposure_cohort = 3) as c3_den_value_count,
        sum(value) filter (where is_den and exposure_cohort = 3) as c3_den_sum,
        max(value) filter (where is_den and exposure_cohort = 3) as c3_den_max
    from phased_events
    -- (first_exposed_at and the variant are the unit's: one per group, no extra sort)
    group by unit_id, metric_id, first_exposed_at
),

metric_aggs as (
    select distinct metric_id, y_agg, x_agg, c_agg, d_agg
    from abflow_metric_events
),

unit_metric_values as (
    -- one row per (unit, metric) with events: value y, ratio denominator x, CUPED covariate c,
    -- pre-exposure ratio denominator d
    select
        a.unit_id collate "default" as unit_id,
        a.variant_key collate "default" as variant_key,
        a.metric_id,
        case m.y_agg
            when 'any' then case when a.num_count > 0 then 1.0 else 0.0 end
            when 'sum' then coalesce(a.num_sum, 0.0)
            when 'count' then cast(a.num_count as double precision)
            when 'mean' then a.num_mean
            when 'max' then a.num_max
        end as y,
        case m.x_agg
            when 'sum' then coalesce(a.den_sum, 0.0)
            when 'count' then cast(a.den_count as double precision)
            when 'mean' then a.den_mean
            when 'max' then a.den_max
        end as x,
        case m.c_agg
            -- a unit without pre-period events has covariate 0 (Deng et al. 2013 fill)
            when 'any' then case when a.pre_count > 0 then 1.0 else 0.0 end
            when 'sum' then coalesce(a.pre_sum, 0.0)
            when 'count' then cast(a.pre_count as double precision)
            when 'mean' then coalesce(a.pre_mean, 0.0)
            when 'max' then coalesce(a.pre_max, 0.0)
        end as c,
        case m.d_agg
            when 'sum' then coalesce(a.den_pre_sum, 0.0)
            when 'count' then cast(a.den_pre_count as double precision)
            when 'mean' then coalesce(a.den_pre_mean, 0.0)
            when 'max' then coalesce(a.den_pre_max, 0.0)
        end as d,
        a.early_count > 0 as contaminated,
        -- exposure-age cohorts (exposure_age.sql unpivots them): in_k, whether the unit has a
        -- row in cohort k, and its value y_k and denominator x_k from the cohort's events,
        -- aggregated as y and x are (mean = sum / count of values, as avg computes it).
        -- (Aggregates no metric reads are 0 or NULL here: abflow/warehouse/plan.py prunes them.)
        a.c0_rows > 0 as in_0,
        case m.y_agg
            when 'any' then case when a.c0_num_count > 0 then 1.0 else 0.0 end
            when 'sum' then coalesce(a.c0_num_sum, 0.0)
            when 'count' then cast(a.c0_num_count as double precision)
            when 'mean' then a.c0_num_sum
                / nullif(cast(a.c0_num_value_count as double precision), 0.0)
            when 'max' then a.c0_num_max
        end as y_0,
        case m.x_agg
            when 'sum' then coalesce(a.c0_den_sum, 0.0)
            when 'count' then cast(a.c0_den_count as double precision)
            when 'mean' then a.c0_den_sum
                / nullif(cast(a.c0_den_value_count as double precision), 0.0)
            when 'max' then a.c0_den_max
        end as x_0,
        a.c1_num_count + a.c1_den_count > 0
            and a.first_exposed_at + cast(:cohort_1_day as integer) * interval '1 day'
                <= :as_of as in_1,
        case m.y_agg
            when 'any' then case when a.c1_num_count > 0 then 1.0 else 0.0 end
            when 'sum' then coalesce(a.c1_num_sum, 0.0)
            when 'count' then cast(a.c1_num_count as double precision)
            when 'mean' then a.c1_num_sum
                / nullif(cast(a.c1_num_value_count as double precision), 0.0)
            when 'max' then a.c1_num_max
        end as y_1,
        case m.x_agg
            when 'sum' then coalesce(a.c1_den_sum, 0.0)
            when 'count' then cast(a.c1_den_count as double precision)
            when 'mean' then a.c1_den_sum
                / nullif(cast(a.c1_den_value_count as double precision), 0.0)
            when 'max' then a.c1_den_max
        end as x_1,
        a.c2_num_count + a.c2_den_count > 0
            and a.first_exposed_at + cast(:cohort_2_day as integer) * interval '1 day'
                <= :as_of as in_2,
        case m.y_agg
            when 'any' then case when a.c2_num_count > 0 then 1.0 else 0.0 end
            when 'sum' then coalesce(a.c2_num_sum, 0.0)
            when 'count' then cast(a.c2_num_count as double precision)
            when 'mean' then a.c2_num_sum
                / nullif(cast(a.c2_num_value_count as double precision), 0.0)
            when 'max' then a.c2_num_max
        end as y_2,
        case m.x_agg
            when 'sum' then coalesce(a.c2_den_sum, 0.0)
            when 'count' then cast(a.c2_den_count as double precision)
            when 'mean' then a.c2_den_sum
                / nullif(cast(a.c2_den_value_count as double precision), 0.0)
            when 'max' then a.c2_den_max
        end as x_2,
        a.c3_num_count + a.c3_den_count > 0
            and a.first_exposed_at + cast(:cohort_3_day as integer) * interval '1 day'
                <= :as_of as in_3,
        case m.y_agg
            when 'any' then case when a.c3_num_count > 0 then 1.0 else 0.0 end
            when 'sum' then coalesce(a.c3_num_sum, 0.0)
            when 'count' then cast(a.c3_num_count as double precision)
            when 'mean' then a.c3_num_sum
                / nullif(cast(a.c3_num_value_count as double precision), 0.0)
            when 'max' then a.c3_num_max
        end as y_3,
        case m.x_agg
            when 'sum' then coalesce(a.c3_den_sum, 0.0)
            when 'count' then cast(a.c3_den_count as double precision)
            when 'mean' then a.c3_den_sum
                / nullif(cast(a.c3_den_value_count as double precision), 0.0)
            when 'max' then a.c3_den_max
        end as x_3
    from unit_metric_aggregates as a
    inner join metric_aggs as m on m.metric_id = a.metric_id
)

select * from unit_metric_values
