-- The experiment's metrics as a session temporary table: one row per (metric, event it reads),
-- with how a unit's value, denominator and CUPED covariate aggregate that metric's events.
-- Built from bound arrays (no SQL from user keys) and ANALYZEd before metric_stats.sql runs, so
-- the planner knows how many event rows the metrics keep: a set-returning function or a VALUES
-- list gives it a guess, and the guess (100x too low) made it sort where it should hash.
create temporary table abflow_metric_events on commit drop as

with

metric_defs as (
    -- metric definitions arrive as parallel arrays of bound values (unnested in lockstep)
    select
        unnest(cast(%(metric_ids)s as integer[])) as metric_id,
        unnest(cast(%(metric_keys)s as text[])) as metric_key,
        unnest(cast(%(metric_kinds)s as text[])) as kind,
        unnest(cast(%(num_events)s as text[])) as num_event,
        unnest(cast(%(num_aggs)s as text[])) as num_agg,
        unnest(cast(%(den_events)s as text[])) as den_event,
        unnest(cast(%(den_aggs)s as text[])) as den_agg,
        unnest(cast(%(window_hours)s as double precision[])) as window_hours
),

metric_reads as (
    -- a metric whose numerator and denominator are the same event reads it once, as both
    select metric_id, num_event as event_name from metric_defs
    union
    select metric_id, den_event from metric_defs where den_event is not null
),

final as (
    select
        m.metric_id,
        m.metric_key,
        r.event_name,
        r.event_name = m.num_event as is_num,
        coalesce(r.event_name = m.den_event, false) as is_den,
        m.window_hours,
        -- y: 'any' is the proportion's 0/1; x only for ratios; c (CUPED) only with a lookback
        case when m.kind = 'proportion' then 'any' else m.num_agg end as y_agg,
        case when m.kind = 'ratio' then m.den_agg end as x_agg,
        case
            when cast(%(lookback_days)s as integer) = 0 or m.kind = 'ratio' then null
            when m.kind = 'proportion' then 'any'
            else m.num_agg
        end as c_agg
    from metric_defs as m
    inner join metric_reads as r on r.metric_id = m.metric_id
)

select * from final
