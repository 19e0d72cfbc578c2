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

{% from "macros.sql" import cohort_sides, from_lookback, in_window, on_side, partial_aggregates,
    phases, read_value %}

with

changed_unit_events as (
    select u.unit_id, u.first_exposed_at, e.event_name,
        -- out-of-range values (and NaN, ±Infinity) are missing, as in metric_stats.sql
        {{ read_value("e") }} as value, e.occurred_at,
        e.properties
    from abflow_refresh_units as u
    inner join source_events as e
        on e.unit_id = u.unit_id
        and e.occurred_at <= :as_of
        and {{ from_lookback("e.occurred_at", "u.first_exposed_at") }}
    where :read_changed
      and u.status in ('new', 'moved')
      and e.event_name in (:event_names)
),

same_unit_events as (
    select u.unit_id, u.first_exposed_at, e.event_name,
        -- out-of-range values (and NaN, ±Infinity) are missing, as in metric_stats.sql
        {{ read_value("e") }} as value, e.occurred_at,
        e.properties
    from abflow_refresh_units as u
    inner join source_events as e
        on e.unit_id = u.unit_id
        -- constant bounds: the planner range-scans events by time, reading only the open days
        and e.occurred_at >= :read_from
        and e.occurred_at <= :as_of
        and {{ from_lookback("e.occurred_at", "u.first_exposed_at") }}
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
    -- (text keys in byte order, collation "C", as in metric_stats.sql). The event's phase,
    -- cohort and seal are computed here once per row, as in metric_stats.sql: in a plain CTE
    -- the planner would inline them into every aggregate's FILTER below (the cohort's CASE
    -- into nine of them). Functions of (first_exposed_at, occurred_at), they change no
    -- duplicate.
    select distinct
        ue.unit_id collate "C" as unit_id,
        m.metric_key collate "C" as metric_key,
        -- third, so that the duplicate removal's sort is the aggregation's (unit, metric, sealed)
        ue.occurred_at < :sealed_before as sealed,
        ue.first_exposed_at,
        ue.occurred_at,
        ue.value,
        {{ on_side("m", "num", "ue.properties") }} as on_num,
        {{ on_side("m", "den", "ue.properties") }} as on_den,
        {{ phases("ue.occurred_at", "ue.first_exposed_at") }}
    from read_events as ue
    inner join abflow_metric_events as m
        on m.event_name = ue.event_name
        and {{ in_window("m", "ue.occurred_at", "ue.first_exposed_at") }}
    where ({{ on_side("m", "num", "ue.properties") }})
        or ({{ on_side("m", "den", "ue.properties") }})
),

classified_events as (
    -- each event's place relative to the exposure
    select
        unit_id,
        metric_key,
        sealed,
        value,
        on_num and post as is_num,
        on_den and post as is_den,
        on_num and in_lookback as is_pre,
        on_den and in_lookback as is_den_pre,
        -- contamination: the metric's own event after the start but before this unit's exposure
        on_num and early as is_contaminated,
        on_num,
        on_den,
        -- the exposure-age cohort exactly as metric_stats.sql's
        exposure_cohort
    from filtered_events
),

final as (
    select
        unit_id collate "default" as unit_id,
        metric_key collate "default" as metric_key,
        sealed,
        {{ partial_aggregates("num", "is_num") }},
        {{ partial_aggregates("den", "is_den") }},
        {{ partial_aggregates("pre", "is_pre") }},
        {{ partial_aggregates("den_pre", "is_den_pre") }},
        count(*) filter (where is_contaminated) as contaminated_count,
        -- exposure-age cohorts as in metric_stats.sql (cohorts 0-3 are after exposure)
        count(*) filter (where exposure_cohort in (0, 4)) as c0_rows,
        {% for group, side, k in cohort_sides %}
        {{ partial_aggregates(group, "on_%s and exposure_cohort = %d" % (side, k)) }}
        {{- "," if not loop.last }}
        {% endfor %}
    from classified_events
    group by unit_id, metric_key, sealed
)

select * from final
