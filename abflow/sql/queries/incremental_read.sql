-- Incremental refresh, step 1: the events not sealed yet, read once and classified, as mergeable
-- per-(unit, metric) aggregates split by whether they are now older than the late-arrival
-- lookback (sealed). Materialised as abflow_read_partials; incremental_stats.sql merges it with
-- the stored partials and incremental_refresh.sql (seal) stores its sealed part.
--
-- Reads abflow_units, abflow_metric_events (the stages of the full pass) and
-- abflow_refresh_units (incremental_refresh.sql: refresh_units). Events are read for
--   * 'new' / 'moved' units (all units on the full path): all their events up to as_of, because
--     their pre-period and contamination events may be old (gated by :read_changed);
--   * 'same' units: only events in [:read_from, :as_of], the days not sealed yet, which include
--     late arrivals within the lookback (gated by :read_same).
-- Events are classified exactly as in metric_stats.sql (tests compare the two field by field),
-- property filters included (abflow_event_filter, replaced by abflow/warehouse/plan.py), and
-- exact duplicates are removed after classification, as there.

with

changed_unit_events as (
    select u.unit_id, u.first_exposed_at, e.event_name,
        -- out-of-range values (and NaN, ±Infinity) are missing, as in metric_stats.sql
        case when abs(e.value) <= :value_limit then e.value end as value, e.occurred_at,
        e.properties
    from abflow_refresh_units as u
    inner join source_events as e
        on e.unit_id = u.unit_id
        and e.occurred_at <= :as_of
        and e.occurred_at >= least(
            u.first_exposed_at - cast(:lookback_days as integer) * interval '1 day', :start_at
        )
    where :read_changed
      and u.status in ('new', 'moved')
      and e.event_name in (:event_names)
),

same_unit_events as (
    select u.unit_id, u.first_exposed_at, e.event_name,
        -- out-of-range values (and NaN, ±Infinity) are missing, as in metric_stats.sql
        case when abs(e.value) <= :value_limit then e.value end as value, e.occurred_at,
        e.properties
    from abflow_refresh_units as u
    inner join source_events as e
        on e.unit_id = u.unit_id
        -- constant bounds: the planner range-scans events by time, reading only the open days
        and e.occurred_at >= :read_from
        and e.occurred_at <= :as_of
        and e.occurred_at >= least(
            u.first_exposed_at - cast(:lookback_days as integer) * interval '1 day', :start_at
        )
    where :read_same
      and u.status = 'same'
      and e.event_name in (:event_names)
),

read_events as (
    select * from changed_unit_events
    union all
    select * from same_unit_events
),

filtered_events as (
    -- one row per (event, metric reading it) and the sides it counts on after the filters;
    -- exact duplicates (same instant, value and sides) count once, as in metric_stats.sql
    -- (text keys in byte order, collation "C", as in metric_stats.sql)
    select distinct
        ue.unit_id collate "C" as unit_id,
        m.metric_key collate "C" as metric_key,
        ue.first_exposed_at,
        ue.occurred_at,
        ue.value,
        m.is_num and abflow_event_filter(m.metric_id, 'num', ue.properties) as on_num,
        m.is_den and abflow_event_filter(m.metric_id, 'den', ue.properties) as on_den
    from read_events as ue
    inner join abflow_metric_events as m
        on m.event_name = ue.event_name
        and (
            m.window_seconds is null
            or ue.occurred_at < ue.first_exposed_at + m.window_seconds * interval '1 second'
        )
    where
        (m.is_num and abflow_event_filter(m.metric_id, 'num', ue.properties))
        or (m.is_den and abflow_event_filter(m.metric_id, 'den', ue.properties))
),

classified_events as (
    -- each event's place relative to the exposure
    select
        unit_id,
        metric_key,
        occurred_at < :sealed_before as sealed,
        value,
        on_num and occurred_at >= first_exposed_at as is_num,
        on_den and occurred_at >= first_exposed_at as is_den,
        on_num and occurred_at < first_exposed_at
            and occurred_at >= first_exposed_at - cast(:lookback_days as integer) * interval '1 day'
            as is_pre,
        on_den and occurred_at < first_exposed_at
            and occurred_at >= first_exposed_at - cast(:lookback_days as integer) * interval '1 day'
            as is_den_pre,
        -- contamination: the metric's own event after the start but before this unit's exposure
        on_num and occurred_at < first_exposed_at and occurred_at >= :start_at
            as is_contaminated,
        on_num,
        on_den,
        -- the exposure-age cohort exactly as metric_stats.sql's exposure_cohort
        case
            when cast(:exposure_age as integer) = 0 then -1
            when occurred_at < least(first_exposed_at, :start_at) then -1
            when occurred_at < first_exposed_at then 4
            when occurred_at
                < first_exposed_at + cast(:cohort_1_day as integer) * interval '1 day' then 0
            when occurred_at
                < first_exposed_at + cast(:cohort_2_day as integer) * interval '1 day' then 1
            when occurred_at
                < first_exposed_at + cast(:cohort_3_day as integer) * interval '1 day' then 2
            else 3
        end as exposure_cohort
    from filtered_events
),

final as (
    select
        unit_id collate "default" as unit_id,
        metric_key collate "default" as metric_key,
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
        count(*) filter (where is_den_pre) as den_pre_count,
        count(value) filter (where is_den_pre) as den_pre_value_count,
        coalesce(sum(value) filter (where is_den_pre), 0.0) as den_pre_sum,
        max(value) filter (where is_den_pre) as den_pre_max,
        count(*) filter (where is_contaminated) as contaminated_count,
        -- exposure-age cohorts as in metric_stats.sql (cohorts 0-3 are after exposure)
        count(*) filter (where exposure_cohort in (0, 4)) as c0_rows,
        count(*) filter (where on_num and exposure_cohort = 0) as c0_num_count,
        count(value) filter (where on_num and exposure_cohort = 0) as c0_num_value_count,
        coalesce(sum(value) filter (where on_num and exposure_cohort = 0), 0.0) as c0_num_sum,
        max(value) filter (where on_num and exposure_cohort = 0) as c0_num_max,
        count(*) filter (where on_den and exposure_cohort = 0) as c0_den_count,
        count(value) filter (where on_den and exposure_cohort = 0) as c0_den_value_count,
        coalesce(sum(value) filter (where on_den and exposure_cohort = 0), 0.0) as c0_den_sum,
        max(value) filter (where on_den and exposure_cohort = 0) as c0_den_max,
        count(*) filter (where on_num and exposure_cohort = 1) as c1_num_count,
        count(value) filter (where on_num and exposure_cohort = 1) as c1_num_value_count,
        coalesce(sum(value) filter (where on_num and exposure_cohort = 1), 0.0) as c1_num_sum,
        max(value) filter (where on_num and exposure_cohort = 1) as c1_num_max,
        count(*) filter (where on_den and exposure_cohort = 1) as c1_den_count,
        count(value) filter (where on_den and exposure_cohort = 1) as c1_den_value_count,
        coalesce(sum(value) filter (where on_den and exposure_cohort = 1), 0.0) as c1_den_sum,
        max(value) filter (where on_den and exposure_cohort = 1) as c1_den_max,
        count(*) filter (where on_num and exposure_cohort = 2) as c2_num_count,
        count(value) filter (where on_num and exposure_cohort = 2) as c2_num_value_count,
        coalesce(sum(value) filter (where on_num and exposure_cohort = 2), 0.0) as c2_num_sum,
        max(value) filter (where on_num and exposure_cohort = 2) as c2_num_max,
        count(*) filter (where on_den and exposure_cohort = 2) as c2_den_count,
        count(value) filter (where on_den and exposure_cohort = 2) as c2_den_value_count,
        coalesce(sum(value) filter (where on_den and exposure_cohort = 2), 0.0) as c2_den_sum,
        max(value) filter (where on_den and exposure_cohort = 2) as c2_den_max,
        count(*) filter (where on_num and exposure_cohort = 3) as c3_num_count,
        count(value) filter (where on_num and exposure_cohort = 3) as c3_num_value_count,
        coalesce(sum(value) filter (where on_num and exposure_cohort = 3), 0.0) as c3_num_sum,
        max(value) filter (where on_num and exposure_cohort = 3) as c3_num_max,
        count(*) filter (where on_den and exposure_cohort = 3) as c3_den_count,
        count(value) filter (where on_den and exposure_cohort = 3) as c3_den_value_count,
        coalesce(sum(value) filter (where on_den and exposure_cohort = 3), 0.0) as c3_den_sum,
        max(value) filter (where on_den and exposure_cohort = 3) as c3_den_max
    from classified_events
    group by unit_id, metric_key, sealed
)

select * from final
