-- Incremental refresh: sufficient statistics per metric x variant x segment for one experiment,
-- from its sealed per-unit partials (unit_metric_partials) plus one read of the events that are
-- not sealed yet; the part of that read now older than the late-arrival lookback is sealed into
-- unit_metric_partials by the same statement.
--
-- Reads the session's temporary tables abflow_units, abflow_unit_segments, abflow_metric_events
-- (extract.build_analysis_tables) and abflow_refresh_units (incremental_refresh.sql:
-- refresh_units). Events are read for
--   * 'new' / 'moved' units (all units on the full path): all their events up to as_of, because
--     their pre-period and contamination events may be old (gated by %(read_changed)s);
--   * 'same' units: only events in [%(read_from)s, %(as_of)s], the days not sealed yet, which
--     include late arrivals within the lookback (gated by %(read_same)s).
-- Events are classified exactly as in metric_stats.sql; the per-unit and final steps give the
-- same numbers (tests compare them field by field), so change the two together.
-- {events} is composed with psycopg.sql.Identifier; every value is a bound parameter.

with

-- import CTEs ----------------------------------------------------------------
changed_unit_events as (
    -- exact duplicate rows count once, and out-of-range values are missing, as in metric_stats.sql
    select distinct u.unit_id, u.first_exposed_at, e.event_name,
        case when abs(e.value) <= %(value_limit)s then e.value end as value, e.occurred_at
    from abflow_refresh_units as u
    inner join {events} as e
        on e.unit_id = u.unit_id
        and e.occurred_at <= %(as_of)s
        and e.occurred_at >= least(
            u.first_exposed_at - make_interval(days => %(lookback_days)s), %(start_at)s
        )
    where %(read_changed)s
      and u.status in ('new', 'moved')
      and e.event_name = any(cast(%(event_names)s as text[]))
),

same_unit_events as (
    select distinct u.unit_id, u.first_exposed_at, e.event_name,
        case when abs(e.value) <= %(value_limit)s then e.value end as value, e.occurred_at
    from abflow_refresh_units as u
    inner join {events} as e
        on e.unit_id = u.unit_id
        -- constant bounds: the planner range-scans events by time, reading only the open days
        and e.occurred_at >= %(read_from)s
        and e.occurred_at <= %(as_of)s
        and e.occurred_at >= least(
            u.first_exposed_at - make_interval(days => %(lookback_days)s), %(start_at)s
        )
    where %(read_same)s
      and u.status = 'same'
      and e.event_name = any(cast(%(event_names)s as text[]))
),

sealed_partials as (
    select *
    from unit_metric_partials
    where experiment_key = %(experiment_key)s
),

-- logic ----------------------------------------------------------------------
classified_events as (
    -- one row per (event, metric reading it) with the event's place relative to the unit's
    -- exposure; the metrics come from abflow_metric_events (joined by hash, as in
    -- metric_stats.sql)
    select
        ue.unit_id,
        m.metric_key,
        ue.occurred_at < %(sealed_before)s as sealed,
        ue.value,
        m.is_num and ue.occurred_at >= ue.first_exposed_at as is_num,
        m.is_den and ue.occurred_at >= ue.first_exposed_at as is_den,
        m.is_num and ue.occurred_at < ue.first_exposed_at
            and ue.occurred_at >= ue.first_exposed_at - make_interval(days => %(lookback_days)s)
            as is_pre,
        -- contamination: the metric's own event after the start but before this unit's exposure
        m.is_num and ue.occurred_at < ue.first_exposed_at
            and ue.occurred_at >= %(start_at)s as is_contaminated
    from (
        select * from changed_unit_events
        union all
        select * from same_unit_events
    ) as ue
    inner join abflow_metric_events as m
        on m.event_name = ue.event_name
        and (
            m.window_hours is null
            or ue.occurred_at < ue.first_exposed_at + m.window_hours * interval '1 hour'
        )
),

read_partials as (
    -- the events just read, as mergeable aggregates; sealed = older than the new lookback
    select
        unit_id,
        metric_key,
        sealed,
        count(*) filter (where is_num) as num_count,
        count(value) filter (where is_num) as num_value_count,
        coalesce(sum(value) filter (where is_num), 0.0) as num_sum,
        max(value) filter (where is_num) as num_max,
        count(*) filter (where is_den) as den_count,
        count(value) filter (where is_den) as den_value_count,
        coalesce(sum(value) filter (where is_den), 0.0) as den_sum,
        max(value) filter (where is_den) as den_max,
        count(*) filter (where is_pre) as pre_count,
        count(value) filter (where is_pre) as pre_value_count,
        coalesce(sum(value) filter (where is_pre), 0.0) as pre_sum,
        max(value) filter (where is_pre) as pre_max,
        count(*) filter (where is_contaminated) as contaminated_count
    from classified_events
    group by unit_id, metric_key, sealed
),

newly_sealed as (
    -- runs once whatever reads it; the rest of this statement still sees the partials as they
    -- were before (one snapshot), so nothing is counted twice
    insert into unit_metric_partials as p (
        experiment_key, unit_id, metric_key,
        num_count, num_value_count, num_sum, num_max,
        den_count, den_value_count, den_sum, den_max,
        pre_count, pre_value_count, pre_sum, pre_max,
        contaminated_count
    )
    select
        %(experiment_key)s, unit_id, metric_key,
        num_count, num_value_count, num_sum, num_max,
        den_count, den_value_count, den_sum, den_max,
        pre_count, pre_value_count, pre_sum, pre_max,
        contaminated_count
    from read_partials
    -- rows of events in none of the classes (a denominator event before exposure) change nothing
    where sealed
      and num_count + den_count + pre_count + contaminated_count > 0
    on conflict (experiment_key, unit_id, metric_key) do update set
        num_count = p.num_count + excluded.num_count,
        num_value_count = p.num_value_count + excluded.num_value_count,
        num_sum = p.num_sum + excluded.num_sum,
        num_max = greatest(p.num_max, excluded.num_max),
        den_count = p.den_count + excluded.den_count,
        den_value_count = p.den_value_count + excluded.den_value_count,
        den_sum = p.den_sum + excluded.den_sum,
        den_max = greatest(p.den_max, excluded.den_max),
        pre_count = p.pre_count + excluded.pre_count,
        pre_value_count = p.pre_value_count + excluded.pre_value_count,
        pre_sum = p.pre_sum + excluded.pre_sum,
        pre_max = greatest(p.pre_max, excluded.pre_max),
        contaminated_count = p.contaminated_count + excluded.contaminated_count
    returning 1
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
        sum(contaminated_count) as contaminated_count
    from read_partials
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
            / nullif(coalesce(s.num_value_count, 0) + coalesce(r.num_value_count, 0), 0)
            as num_mean,
        greatest(s.num_max, r.num_max) as num_max,
        coalesce(s.den_count, 0) + coalesce(r.den_count, 0) as den_count,
        coalesce(s.den_sum, 0.0) + coalesce(r.den_sum, 0.0) as den_sum,
        (coalesce(s.den_sum, 0.0) + coalesce(r.den_sum, 0.0))
            / nullif(coalesce(s.den_value_count, 0) + coalesce(r.den_value_count, 0), 0)
            as den_mean,
        greatest(s.den_max, r.den_max) as den_max,
        coalesce(s.pre_count, 0) + coalesce(r.pre_count, 0) as pre_count,
        coalesce(s.pre_sum, 0.0) + coalesce(r.pre_sum, 0.0) as pre_sum,
        (coalesce(s.pre_sum, 0.0) + coalesce(r.pre_sum, 0.0))
            / nullif(coalesce(s.pre_value_count, 0) + coalesce(r.pre_value_count, 0), 0)
            as pre_mean,
        greatest(s.pre_max, r.pre_max) as pre_max,
        coalesce(s.contaminated_count, 0) + coalesce(r.contaminated_count, 0)
            as contaminated_count
    from sealed_partials as s
    full outer join read_unit_partials as r
        on r.unit_id = s.unit_id
        and r.metric_key = s.metric_key
),

metric_nulls as (
    -- per metric: how y, x and c aggregate, and whether a unit without events holds 0 or NULL
    select distinct
        metric_key,
        y_agg,
        x_agg,
        c_agg,
        y_agg in ('any', 'sum', 'count') as y_zero,
        x_agg in ('sum', 'count') as x_zero,
        c_agg is not null as c_zero
    from abflow_metric_events
),

unit_values as (
    -- one row per (unit, metric) with a partial, as in metric_stats.sql: units without one add 0
    -- (or NULL for mean/max) to every sum, so the units x metrics cross product is never built
    select
        ue.unit_id,
        m.metric_key,
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
        ue.contaminated_count > 0 as contaminated
    from unit_events as ue
    inner join metric_nulls as m on m.metric_key = ue.metric_key
),

value_sums as (
    select
        uv.metric_key,
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
    group by uv.metric_key, us.variant_key, us.segment
),

exposed as (
    select variant_key, segment, count(*) as exposed_units
    from abflow_unit_segments
    group by variant_key, segment
),

final as (
    -- the same final step as metric_stats.sql
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

select final.*, (select count(*) from newly_sealed) as partial_rows_sealed
from final
order by metric_key, variant_key, segment
