-- Sufficient statistics per metric x variant x segment for one experiment, in one pass over events.
-- Reads the session's temporary tables abflow_units (units.sql), abflow_unit_segments
-- (unit_segments.sql) and abflow_metric_events (metric_events.sql), all ANALYZEd so the planner
-- has real row counts.
-- The identifier {events} is composed with psycopg.sql.Identifier; every value is a bound
-- parameter, so no SQL is generated from user input. Dialect-neutral on purpose: the same text
-- runs on DuckDB (tests/integration/test_portability.py), so no jsonb, make_interval, ::casts
-- or = any(array).
--
-- Shape (measured in benchmarks/, EXPLAIN at 5M events): the events scan joins first exposures
-- and the metric reads once by hash; duplicate removal and the per-(unit, metric) aggregation
-- share one sort (Sort -> Unique -> GroupAggregate, as a hand-written query would), keyed by
-- unit and metric only: the variant comes back with the segment join, so it is not carried
-- through the sort (measured 13.3 s -> 11.6 s at 5M). Only (unit, metric) pairs that have
-- events are aggregated, because a unit without events adds 0 (or NULL for mean/max) to every
-- sum; exposed units are counted once from abflow_unit_segments; the few final groups hash.
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
        -- a value out of range (or NaN, ±Infinity) is a bad row: read as missing, never summed
        -- (its square would overflow); the GX check value_finite_in_range reports it
        case when abs(e.value) <= %(value_limit)s then e.value end as value,
        m.is_num,
        m.is_den,
        e.occurred_at >= u.first_exposed_at as post,
        e.occurred_at < u.first_exposed_at
            and e.occurred_at >= u.first_exposed_at - cast(%(lookback_days)s as integer) * interval '1 day'
            as pre,
        e.occurred_at < u.first_exposed_at and e.occurred_at >= %(start_at)s as early
    from abflow_units as u
    inner join {events} as e
        on e.unit_id = u.unit_id
        and e.occurred_at <= %(as_of)s
        and e.occurred_at >= least(
            u.first_exposed_at - cast(%(lookback_days)s as integer) * interval '1 day', %(start_at)s
        )
    inner join abflow_metric_events as m
        on m.event_name = e.event_name
        and (
            m.window_hours is null
            or e.occurred_at < u.first_exposed_at + m.window_hours * interval '1 hour'
        )
),

unit_values as (
    -- one row per (unit, metric) with events: value y, ratio denominator x, CUPED covariate c
    select
        unit_id,
        metric_id,
        case y_agg
            when 'any' then case when count(*) filter (where is_num and post) > 0 then 1.0 else 0.0 end
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
            when 'any' then case when count(*) filter (where is_num and pre) > 0 then 1.0 else 0.0 end
            when 'sum' then coalesce(sum(value) filter (where is_num and pre), 0.0)
            when 'count' then cast(count(*) filter (where is_num and pre) as double precision)
            when 'mean' then coalesce(avg(value) filter (where is_num and pre), 0.0)
            when 'max' then coalesce(max(value) filter (where is_num and pre), 0.0)
        end as c,
        count(*) filter (where is_num and early) > 0 as contaminated
    from unit_metric_events
    group by unit_id, metric_id, y_agg, x_agg, c_agg
),

value_sums as (
    select
        uv.metric_id,
        us.variant_key,
        us.segment,
        count(uv.y) as units,
        sum(uv.y) as sum,
        sum(uv.y * uv.y) as sum_squares,
        sum(uv.x) as denominator_sum,
        sum(uv.x * uv.x) as denominator_sum_squares,
        sum(uv.x * uv.y) as sum_products,
        sum(uv.c) filter (where uv.y is not null) as covariate_sum,
        sum(uv.c * uv.c) filter (where uv.y is not null) as covariate_sum_squares,
        sum(uv.c * uv.y) as covariate_sum_products,
        count(*) filter (where uv.contaminated) as contaminated_units
    from unit_values as uv
    inner join abflow_unit_segments as us on us.unit_id = uv.unit_id
    group by uv.metric_id, us.variant_key, us.segment
),

exposed as (
    select variant_key, segment, count(*) as exposed_units
    from abflow_unit_segments
    group by variant_key, segment
),

metric_nulls as (
    -- what a unit without events of the metric holds: is its y, x, c NULL or 0?
    select distinct
        metric_id,
        metric_key,
        y_agg in ('any', 'sum', 'count') as y_zero,
        x_agg in ('sum', 'count') as x_zero,
        c_agg is not null as c_zero
    from abflow_metric_events
),

final as (
    select
        m.metric_key,
        ex.variant_key,
        ex.segment,
        ex.exposed_units,
        case when m.y_zero then ex.exposed_units else coalesce(vs.units, 0) end as units,
        coalesce(vs.sum, 0.0) as sum,
        coalesce(vs.sum_squares, 0.0) as sum_squares,
        coalesce(vs.denominator_sum, case when m.x_zero then 0.0 end) as denominator_sum,
        coalesce(vs.denominator_sum_squares, case when m.x_zero then 0.0 end)
            as denominator_sum_squares,
        coalesce(vs.sum_products, case when m.x_zero and m.y_zero then 0.0 end) as sum_products,
        coalesce(vs.covariate_sum, case when m.c_zero and m.y_zero then 0.0 end) as covariate_sum,
        coalesce(vs.covariate_sum_squares, case when m.c_zero and m.y_zero then 0.0 end)
            as covariate_sum_squares,
        coalesce(vs.covariate_sum_products, case when m.c_zero and m.y_zero then 0.0 end)
            as covariate_sum_products,
        coalesce(vs.contaminated_units, 0) as contaminated_units
    from exposed as ex
    cross join metric_nulls as m
    left join value_sums as vs
        on vs.metric_id = m.metric_id
        and vs.variant_key = ex.variant_key
        and vs.segment = ex.segment
)

select * from final
order by metric_key, variant_key, segment
