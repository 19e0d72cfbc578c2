-- Incremental refresh: the bookkeeping statements, one per "-- name:" block (each block is one
-- statement, rendered for the warehouse's dialect and executed on its own with bound values).
-- The events are read by incremental_read.sql and merged by incremental_stats.sql. The state
-- tables (unit_metric_partials, unit_exposures_seen, refresh_state) live in the warehouse:
-- migration 004 creates them on PostgreSQL; on DuckDB its CREATE TABLE statements are rendered
-- and run (abflow.warehouse.incremental.ensure_state_tables).

{% from "macros.sql" import partial_columns %}

-- name: lock
-- PostgreSQL only: one refresh per experiment at a time (the partials are read-modify-write).
-- Other engines serialise refreshes of one experiment inside the process.
select pg_advisory_xact_lock(hashtextextended('abflow.incremental:' || :experiment_key, 0))

-- name: read_state
select watermark, sealed_before, definition_hash
from refresh_state
where experiment_key = :experiment_key

-- name: refresh_units
-- Every analysed unit now, and every unit analysed at the last refresh, with what changed:
-- 'new' / 'moved' (first exposure differs) units are recomputed from all their events, 'gone'
-- units are forgotten, 'same' units keep their sealed partials and only the events not sealed
-- yet are read for them. Materialised as abflow_refresh_units.
with

current_units as (
    select unit_id, first_exposed_at
    from abflow_units
),

seen_units as (
    select unit_id, first_exposed_at
    from unit_exposures_seen
    where experiment_key = :experiment_key
      and not :full
),

final as (
    select
        coalesce(c.unit_id, s.unit_id) as unit_id,
        c.first_exposed_at,
        case
            when c.unit_id is null then 'gone'
            when s.unit_id is null then 'new'
            when s.first_exposed_at <> c.first_exposed_at then 'moved'
            else 'same'
        end as status
    from current_units as c
    full outer join seen_units as s on s.unit_id = c.unit_id
)

select * from final

-- name: count_recomputed
select count(*) as units from abflow_refresh_units where status in ('new', 'moved')

-- name: forget_experiment_partials
delete from unit_metric_partials
where experiment_key = :experiment_key

-- name: forget_experiment_seen
delete from unit_exposures_seen
where experiment_key = :experiment_key

-- name: forget_changed_units
delete from unit_metric_partials
where experiment_key = :experiment_key
  and unit_id in (select unit_id from abflow_refresh_units where status <> 'same')

-- name: forget_gone_seen
delete from unit_exposures_seen
where experiment_key = :experiment_key
  and unit_id in (select unit_id from abflow_refresh_units where status = 'gone')

-- name: seal
-- The part of what was just read that is now older than the lookback joins the stored partials.
-- Rows of events in none of the classes (a denominator event before the start or in the CUPED
-- lookback before it, outside exposure-age cohort 0) change nothing.
insert into unit_metric_partials (
    experiment_key, unit_id, metric_key,
    {{ partial_columns | join(", ") }}
)
select
    :experiment_key, unit_id, metric_key,
    {{ partial_columns | join(", ") }}
from abflow_read_partials
where sealed
  and num_count + den_count + pre_count + den_pre_count + contaminated_count + c0_rows > 0
on conflict (experiment_key, unit_id, metric_key) do update set
    -- counts and sums add up, maxima take the maximum
    {% for column in partial_columns %}
    {% if column.endswith("_max") %}
    {{ column }} = greatest(unit_metric_partials.{{ column }}, excluded.{{ column }})
    {{- "," if not loop.last }}
    {% else %}
    {{ column }} = unit_metric_partials.{{ column }} + excluded.{{ column }}
    {{- "," if not loop.last }}
    {% endif %}
    {% endfor %}

-- name: remember_seen
insert into unit_exposures_seen (experiment_key, unit_id, first_exposed_at)
select :experiment_key, unit_id, first_exposed_at
from abflow_refresh_units
where status in ('new', 'moved')
on conflict (experiment_key, unit_id) do update
    set first_exposed_at = excluded.first_exposed_at

-- name: write_state
insert into refresh_state
    (experiment_key, watermark, sealed_before, definition_hash, mode, refreshed_at)
values (:experiment_key, :as_of, :sealed_before, :definition_hash, :mode, current_timestamp)
on conflict (experiment_key) do update set
    watermark = excluded.watermark,
    sealed_before = excluded.sealed_before,
    definition_hash = excluded.definition_hash,
    mode = excluded.mode,
    refreshed_at = excluded.refreshed_at

-- name: count_sealed
-- Unit x metric rows the seal step merges into unit_metric_partials (read before it runs).
select count(*) as sealed_rows
from abflow_read_partials
where sealed
  and num_count + den_count + pre_count + den_pre_count + contaminated_count + c0_rows > 0
