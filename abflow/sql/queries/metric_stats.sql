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
    -- event names, told apart by is_num / is_den. Only narrow keys go through the duplicate
    -- removal (no aggregation names: they depend on the metric and join back on 6 rows).
    select distinct
        u.unit_id,
        m.metric_id,
        u.first_exposed_at,
        e.occurred_at,
        -- a value out of range (or NaN, ±Infinity) is a bad row: read as missing, never summed
        -- (its square would overflow); the GX check value_finite_in_range reports it
        case when abs(e.value) <= :value_limit then e.value end as value,
        m.is_num,
        m.is_den
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

phased_events as (
    -- each row's phase relative to the unit's exposure
    select
        unit_id,
        metric_id,
        value,
        is_num and occurred_at >= first_exposed_at as num_post,
        is_den and occurred_at >= first_exposed_at as den_post,
        is_num
            and occurred_at < first_exposed_at
            and occurred_at >= first_exposed_at - cast(:lookback_days as integer) * interval '1 day'
            as num_pre,
        is_num and occurred_at < first_exposed_at and occurred_at >= :start_at as num_early
    from unit_metric_events
),

unit_metric_aggregates as (
    -- every aggregate a metric may use, per (unit, metric) with events; the metric's own
    -- aggregation picks from them below
    select
        unit_id,
        metric_id,
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
        count(*) filter (where num_early) as early_count
    from phased_events
    group by unit_id, metric_id
),

metric_aggs as (
    select distinct metric_id, y_agg, x_agg, c_agg
    from abflow_metric_events
),

unit_metric_values as (
    -- one row per (unit, metric) with events: value y, ratio denominator x, CUPED covariate c
    select
        a.unit_id,
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
        a.early_count > 0 as contaminated
    from unit_metric_aggregates as a
    inner join metric_aggs as m on m.metric_id = a.metric_id
)

select * from unit_metric_values
