-- Sufficient statistics per metric x variant x segment for one experiment, in one pass over events.
-- Reads the session's temporary tables abflow_units / abflow_unit_segments (units.sql), so the
-- planner has real row counts. The identifier {events} is composed with psycopg.sql.Identifier;
-- every value is a bound parameter (metric definitions as arrays), so no SQL is generated from
-- user input. Dialect-neutral on purpose: the same text runs on DuckDB (tests/integration/
-- test_portability.py), so no jsonb, make_interval, ::casts or = any(array).
--
-- Shape (measured in benchmarks/): the events scan joins first exposures once; metrics join the
-- event rows by hash on event_name; each row's phase (post / CUPED pre / contamination) is
-- decided once; only (unit, metric) pairs that have events are aggregated, because a unit
-- without events adds 0 (or NULL for mean/max) to every sum, and exposed units are counted once
-- from abflow_units.
with

metric_defs as (
    -- metric definitions arrive as parallel arrays of bound values (unnested in lockstep)
    select
        unnest(cast(%(metric_keys)s as text[])) as metric_key,
        unnest(cast(%(metric_kinds)s as text[])) as kind,
        unnest(cast(%(num_events)s as text[])) as num_event,
        unnest(cast(%(num_aggs)s as text[])) as num_agg,
        unnest(cast(%(den_events)s as text[])) as den_event,
        unnest(cast(%(den_aggs)s as text[])) as den_agg,
        unnest(cast(%(window_hours)s as double precision[])) as window_hours
),

metric_events as (
    -- one row per (metric, event it reads): an equality join on event_name the planner can hash
    select metric_key, num_event as event_name from metric_defs
    union
    select metric_key, den_event from metric_defs where den_event is not null
),

unit_event_rows as (
    -- unchanged: the single scan of events, joined to first exposures once; exact duplicate
    -- rows count once
    select distinct
        u.unit_id, u.variant_key, u.first_exposed_at, e.event_name, e.value, e.occurred_at
    from abflow_units as u
    inner join {events} as e
        on e.unit_id = u.unit_id
        and e.occurred_at <= %(as_of)s
        and e.occurred_at >= least(
            u.first_exposed_at - cast(%(lookback_days)s as integer) * interval '1 day', %(start_at)s
        )
    where e.event_name in (select unnest(cast(%(event_names)s as text[])))
),

event_rows as (
    -- one narrow row per (event, metric it feeds), its phase decided here once, joined to the
    -- metrics by hash on event_name (not a nested loop over `event_name in (num, den)`)
    select
        e.unit_id,
        e.variant_key,
        m.metric_key,
        e.event_name = m.num_event as is_num,
        e.event_name = m.den_event as is_den,
        e.occurred_at >= e.first_exposed_at as post,
        e.occurred_at < e.first_exposed_at
            and e.occurred_at >= e.first_exposed_at - cast(%(lookback_days)s as integer) * interval '1 day'
            as pre,
        e.occurred_at < e.first_exposed_at and e.occurred_at >= %(start_at)s as early,
        e.value
    from unit_event_rows as e
    inner join metric_events as me
        on me.event_name = e.event_name
    inner join metric_defs as m
        on m.metric_key = me.metric_key
        and (
            m.window_hours is null
            or e.occurred_at < e.first_exposed_at + m.window_hours * interval '1 hour'
        )
),

unit_events as (
    select
        unit_id,
        variant_key,
        metric_key,
        count(*) filter (where is_num and post) as num_count,
        sum(value) filter (where is_num and post) as num_sum,
        avg(value) filter (where is_num and post) as num_mean,
        max(value) filter (where is_num and post) as num_max,
        count(*) filter (where is_den and post) as den_count,
        sum(value) filter (where is_den and post) as den_sum,
        avg(value) filter (where is_den and post) as den_mean,
        max(value) filter (where is_den and post) as den_max,
        count(*) filter (where is_num and pre) as pre_count,
        sum(value) filter (where is_num and pre) as pre_sum,
        avg(value) filter (where is_num and pre) as pre_mean,
        max(value) filter (where is_num and pre) as pre_max,
        count(*) filter (where is_num and early) as contaminated_count
    from event_rows
    group by unit_id, variant_key, metric_key
),

unit_values as (
    -- only (unit, metric) pairs with events; the others add 0 (or NULL) to every sum below
    select
        ue.unit_id,
        ue.variant_key,
        m.metric_key,
        case
            when m.kind = 'proportion' then case when ue.num_count > 0 then 1.0 else 0.0 end
            when m.num_agg = 'sum' then coalesce(ue.num_sum, 0.0)
            when m.num_agg = 'count' then cast(ue.num_count as double precision)
            when m.num_agg = 'mean' then ue.num_mean
            when m.num_agg = 'max' then ue.num_max
        end as y,
        case
            when m.kind <> 'ratio' then null
            when m.den_agg = 'sum' then coalesce(ue.den_sum, 0.0)
            when m.den_agg = 'count' then cast(ue.den_count as double precision)
            when m.den_agg = 'mean' then ue.den_mean
            when m.den_agg = 'max' then ue.den_max
        end as x,
        case
            when %(lookback_days)s = 0 or m.kind = 'ratio' then null
            when m.kind = 'proportion' then case when ue.pre_count > 0 then 1.0 else 0.0 end
            when m.num_agg = 'sum' then coalesce(ue.pre_sum, 0.0)
            when m.num_agg = 'count' then cast(ue.pre_count as double precision)
            when m.num_agg = 'mean' then coalesce(ue.pre_mean, 0.0)
            when m.num_agg = 'max' then coalesce(ue.pre_max, 0.0)
        end as c,
        ue.contaminated_count > 0 as contaminated
    from unit_events as ue
    inner join metric_defs as m on m.metric_key = ue.metric_key
),

value_sums as (
    select
        uv.metric_key,
        uv.variant_key,
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
    group by uv.metric_key, uv.variant_key, us.segment
),

exposed as (
    select u.variant_key, us.segment, count(*) as exposed_units
    from abflow_units as u
    inner join abflow_unit_segments as us on us.unit_id = u.unit_id
    group by u.variant_key, us.segment
),

metric_nulls as (
    -- what a unit without events of the metric holds: is its y, x, c NULL or 0?
    select
        metric_key,
        kind,
        kind = 'proportion' or num_agg in ('sum', 'count') as y_zero,
        kind = 'ratio' and den_agg in ('sum', 'count') as x_zero,
        %(lookback_days)s <> 0 and kind <> 'ratio' as c_zero
    from metric_defs
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
        on vs.metric_key = m.metric_key
        and vs.variant_key = ex.variant_key
        and vs.segment = ex.segment
)

select * from final
order by metric_key, variant_key, segment
