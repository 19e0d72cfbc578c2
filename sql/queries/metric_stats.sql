-- Sufficient statistics per metric x variant x segment for one experiment, in one pass over events.
-- Reads the session's temporary tables abflow_units / abflow_unit_segments (units.sql), so the
-- planner has real row counts. The identifier {events} is composed with psycopg.sql.Identifier;
-- every value is a bound parameter. Metric definitions arrive as one jsonb parameter, so no SQL
-- is generated from user input.

with

-- import CTEs ----------------------------------------------------------------
metric_defs as (
    select *
    from jsonb_to_recordset(cast(%(metrics)s as jsonb)) as m (
        metric_key text,
        kind text,
        num_event text,
        num_agg text,
        den_event text,
        den_agg text,
        window_hours double precision
    )
),

unit_event_rows as (
    -- the single scan of events, joined to first exposures once; exact duplicate rows (same
    -- unit, event, value and time) count once: GX reports them, the analysis excludes them
    select distinct u.unit_id, u.first_exposed_at, e.event_name, e.value, e.occurred_at
    from abflow_units as u
    inner join {events} as e
        on e.unit_id = u.unit_id
        and e.occurred_at <= %(as_of)s
        and e.occurred_at >= least(
            u.first_exposed_at - make_interval(days => %(lookback_days)s), %(start_at)s
        )
    where e.event_name = any(cast(%(event_names)s as text[]))
),

unit_events as (
    -- every metric (and its CUPED pre-period and contamination) per unit at once
    select
        e.unit_id,
        m.metric_key,
        count(*) filter (where e.event_name = m.num_event and e.occurred_at >= e.first_exposed_at)
            as num_count,
        sum(e.value) filter (where e.event_name = m.num_event and e.occurred_at >= e.first_exposed_at)
            as num_sum,
        avg(e.value) filter (where e.event_name = m.num_event and e.occurred_at >= e.first_exposed_at)
            as num_mean,
        max(e.value) filter (where e.event_name = m.num_event and e.occurred_at >= e.first_exposed_at)
            as num_max,
        count(*) filter (where e.event_name = m.den_event and e.occurred_at >= e.first_exposed_at)
            as den_count,
        sum(e.value) filter (where e.event_name = m.den_event and e.occurred_at >= e.first_exposed_at)
            as den_sum,
        avg(e.value) filter (where e.event_name = m.den_event and e.occurred_at >= e.first_exposed_at)
            as den_mean,
        max(e.value) filter (where e.event_name = m.den_event and e.occurred_at >= e.first_exposed_at)
            as den_max,
        count(*) filter (where e.event_name = m.num_event and e.occurred_at < e.first_exposed_at
            and e.occurred_at >= e.first_exposed_at - make_interval(days => %(lookback_days)s))
            as pre_count,
        sum(e.value) filter (where e.event_name = m.num_event and e.occurred_at < e.first_exposed_at
            and e.occurred_at >= e.first_exposed_at - make_interval(days => %(lookback_days)s))
            as pre_sum,
        avg(e.value) filter (where e.event_name = m.num_event and e.occurred_at < e.first_exposed_at
            and e.occurred_at >= e.first_exposed_at - make_interval(days => %(lookback_days)s))
            as pre_mean,
        max(e.value) filter (where e.event_name = m.num_event and e.occurred_at < e.first_exposed_at
            and e.occurred_at >= e.first_exposed_at - make_interval(days => %(lookback_days)s))
            as pre_max,
        -- contamination: the metric's own event after the start but before this unit's exposure
        count(*) filter (where e.event_name = m.num_event and e.occurred_at < e.first_exposed_at
            and e.occurred_at >= %(start_at)s) as contaminated_count
    from unit_event_rows as e
    inner join metric_defs as m
        on e.event_name in (m.num_event, m.den_event)
        and (
            m.window_hours is null
            or e.occurred_at < e.first_exposed_at + m.window_hours * interval '1 hour'
        )
    group by e.unit_id, m.metric_key
),

unit_values as (
    select
        u.unit_id,
        u.variant_key,
        m.metric_key,
        case
            when m.kind = 'proportion' then case when coalesce(ue.num_count, 0) > 0 then 1.0 else 0.0 end
            when m.num_agg = 'sum' then coalesce(ue.num_sum, 0.0)
            when m.num_agg = 'count' then coalesce(ue.num_count, 0)::double precision
            when m.num_agg = 'mean' then ue.num_mean
            when m.num_agg = 'max' then ue.num_max
        end as y,
        case
            when m.kind <> 'ratio' then null
            when m.den_agg = 'sum' then coalesce(ue.den_sum, 0.0)
            when m.den_agg = 'count' then coalesce(ue.den_count, 0)::double precision
            when m.den_agg = 'mean' then ue.den_mean
            when m.den_agg = 'max' then ue.den_max
        end as x,
        case
            when %(lookback_days)s = 0 or m.kind = 'ratio' then null
            when m.kind = 'proportion' then case when coalesce(ue.pre_count, 0) > 0 then 1.0 else 0.0 end
            when m.num_agg = 'sum' then coalesce(ue.pre_sum, 0.0)
            when m.num_agg = 'count' then coalesce(ue.pre_count, 0)::double precision
            when m.num_agg = 'mean' then coalesce(ue.pre_mean, 0.0)
            when m.num_agg = 'max' then coalesce(ue.pre_max, 0.0)
        end as c,
        coalesce(ue.contaminated_count, 0) > 0 as contaminated
    from abflow_units as u
    cross join metric_defs as m
    left join unit_events as ue
        on ue.unit_id = u.unit_id
        and ue.metric_key = m.metric_key
),

final as (
    select
        uv.metric_key,
        uv.variant_key,
        us.segment,
        count(*) as exposed_units,
        count(uv.y) as units,
        coalesce(sum(uv.y), 0.0) as sum,
        coalesce(sum(uv.y * uv.y), 0.0) as sum_squares,
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
)

select * from final
order by metric_key, variant_key, segment
