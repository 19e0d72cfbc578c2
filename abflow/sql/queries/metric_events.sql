-- The experiment's metrics: one row per (metric, event it reads), with how a unit's value,
-- denominator and CUPED covariate aggregate that metric's events. Materialised (and ANALYZEd on
-- PostgreSQL) as abflow_metric_events before metric_stats.sql runs, so the planner knows how many
-- event rows the metrics keep: a guess (100x too low) made it sort where it should hash.
--
-- metric_defs is a parameter table: abflow/warehouse/plan.py supplies it as a CTE of bound
-- values, one row per metric (metric_id, metric_key, kind, num_event, num_agg, den_event,
-- den_agg, window_seconds, and the capping of each side: num_cap_type, num_cap_lower,
-- num_cap_upper, num_cap_ignore_zeros, den_cap_...), so no SQL is built from user keys and no
-- array type is needed. The
-- window is whole seconds (an integer): BigQuery and Snowflake add integers to timestamps, not
-- fractions of an hour.

with

metric_reads as (
    -- a metric whose numerator and denominator are the same event reads it once, as both
    select metric_id, num_event as event_name from metric_defs
    union
    select metric_id, den_event as event_name from metric_defs where den_event is not null
),

final as (
    select
        m.metric_id,
        m.metric_key,
        r.event_name,
        r.event_name = m.num_event as is_num,
        coalesce(r.event_name = m.den_event, false) as is_den,
        m.window_seconds,
        -- y: 'any' is the proportion's 0/1; x only for ratios; c (CUPED) only with a lookback;
        -- d, the pre-exposure denominator, only for ratios with a lookback (ratio CUPED)
        case when m.kind = 'proportion' then 'any' else m.num_agg end as y_agg,
        case when m.kind = 'ratio' then m.den_agg end as x_agg,
        case
            when cast(:lookback_days as integer) = 0 then cast(null as text)
            when m.kind = 'quantile' then cast(null as text)
            when m.kind = 'proportion' then 'any'
            else m.num_agg
        end as c_agg,
        case
            when cast(:lookback_days as integer) > 0 and m.kind = 'ratio' then m.den_agg
        end as d_agg,
        -- capping: y and its covariate c take the numerator's, x and d the denominator's
        m.num_cap_type,
        m.num_cap_lower,
        m.num_cap_upper,
        m.num_cap_ignore_zeros,
        m.den_cap_type,
        m.den_cap_lower,
        m.den_cap_upper,
        m.den_cap_ignore_zeros
    from metric_defs as m
    inner join metric_reads as r on r.metric_id = m.metric_id
)

select * from final
