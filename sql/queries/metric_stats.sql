-- Per-unit values of one experiment, in one pass over its events: one row per (unit, metric)
-- that has events, with the unit's value y, ratio denominator x, CUPED covariate c and
-- contamination flag. metric_final.sql turns these rows into the sufficient statistics; the
-- incremental refresh feeds the same final step from its merged partials.
-- Reads abflow_units (units.sql), abflow_metric_events (metric_events.sql) and the events source.
--
-- Shape (measured in benchmarks/, EXPLAIN at 5M events on PostgreSQL): the events scan joins
-- first exposures and the metric reads once by hash; duplicate removal and the per-(unit,
-- metric) aggregation share one sort (Sort -> Unique -> GroupAggregate, as a hand-written query
-- would), keyed by unit and metric only: the variant comes back with the segment join in the
-- final step, so it is not carried through the sort. Only (unit, metric) pairs that have
-- events are aggregated, because a unit without events adds 0 (or NULL for mean/max) to every
-- sum.

with

unit_metric_events as (
    -- the single scan of events, joined to first exposures and to the metrics reading each
    -- event. Exact duplicate event rows count once: within one (unit, metric) an event is
    -- identified by (occurred_at, value, is_num, is_den) because the metric reads at most two
    -- event names, told apart by is_num / is_den. Each row's phase is decided here once.
    select distinct
        u.unit_id,
        m.metric_id,
        m.y_agg,
        m.x_agg,
        m.c_agg,
        e.occurred_at,
        e.value,
        m.is_num,
        m.is_den,
        e.occurred_at >= u.first_exposed_at as post,
        e.occurred_at < u.first_exposed_at
            and e.occurred_at >= u.first_exposed_at
                - cast(:lookback_days as integer) * interval '1 day'
            as pre,
        e.occurred_at < u.first_exposed_at and e.occurred_at >= :start_at as early
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
),

unit_metric_values as (
    -- one row per (unit, metric) with events: value y, ratio denominator x, CUPED covariate c
    select
        unit_id,
        metric_id,
        case y_agg
            when 'any' then
                case when count(*) filter (where is_num and post) > 0 then 1.0 else 0.0 end
            when 'sum' then coalesce(sum(value) filter (where is_num and post), 0.0)
            when 'count' then cast(count(*) filter (where is_num and post) as double precision)
            when 'mean' then avg(value) filter (where is_num and post)
            when 'max' then max(value) filter (where is_num and post)
        end as y,
        case x_agg
            when 'sum' then coalesce(sum(value) filter (where is_den and post), 0.0)
            when 'count' then cast(count(*) filter (where is_den and post) as double precision)
            when 'mean' then avg(value) filter (where is_den and post)
            when 'max' then max(value) filter (where is_den and post)
        end as x,
        case c_agg
            -- a unit without pre-period events has covariate 0 (Deng et al. 2013 fill)
            when 'any' then
                case when count(*) filter (where is_num and pre) > 0 then 1.0 else 0.0 end
            when 'sum' then coalesce(sum(value) filter (where is_num and pre), 0.0)
            when 'count' then cast(count(*) filter (where is_num and pre) as double precision)
            when 'mean' then coalesce(avg(value) filter (where is_num and pre), 0.0)
            when 'max' then coalesce(max(value) filter (where is_num and pre), 0.0)
        end as c,
        count(*) filter (where is_num and early) > 0 as contaminated
    from unit_metric_events
    group by unit_id, metric_id, y_agg, x_agg, c_agg
)

select * from unit_metric_values
