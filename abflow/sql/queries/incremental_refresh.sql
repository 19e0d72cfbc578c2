-- Incremental refresh: the bookkeeping statements, one per "-- name:" block (each block is one
-- statement, rendered for the warehouse's dialect and executed on its own with bound values).
-- The events are read by incremental_read.sql and merged by incremental_stats.sql. The state
-- tables (unit_metric_partials, unit_exposures_seen, refresh_state) live in the warehouse:
-- migration 004 creates them on PostgreSQL; on DuckDB its CREATE TABLE statements are rendered
-- and run (abflow.warehouse.incremental.ensure_state_tables).

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
    num_count, num_value_count, num_sum, num_max,
    den_count, den_value_count, den_sum, den_max,
    pre_count, pre_value_count, pre_sum, pre_max,
    den_pre_count, den_pre_value_count, den_pre_sum, den_pre_max,
    contaminated_count,
    c0_rows,
    c0_num_count, c0_num_value_count, c0_num_sum, c0_num_max,
    c0_den_count, c0_den_value_count, c0_den_sum, c0_den_max,
    c1_num_count, c1_num_value_count, c1_num_sum, c1_num_max,
    c1_den_count, c1_den_value_count, c1_den_sum, c1_den_max,
    c2_num_count, c2_num_value_count, c2_num_sum, c2_num_max,
    c2_den_count, c2_den_value_count, c2_den_sum, c2_den_max,
    c3_num_count, c3_num_value_count, c3_num_sum, c3_num_max,
    c3_den_count, c3_den_value_count, c3_den_sum, c3_den_max
)
select
    :experiment_key, unit_id, metric_key,
    num_count, num_value_count, num_sum, num_max,
    den_count, den_value_count, den_sum, den_max,
    pre_count, pre_value_count, pre_sum, pre_max,
    den_pre_count, den_pre_value_count, den_pre_sum, den_pre_max,
    contaminated_count,
    c0_rows,
    c0_num_count, c0_num_value_count, c0_num_sum, c0_num_max,
    c0_den_count, c0_den_value_count, c0_den_sum, c0_den_max,
    c1_num_count, c1_num_value_count, c1_num_sum, c1_num_max,
    c1_den_count, c1_den_value_count, c1_den_sum, c1_den_max,
    c2_num_count, c2_num_value_count, c2_num_sum, c2_num_max,
    c2_den_count, c2_den_value_count, c2_den_sum, c2_den_max,
    c3_num_count, c3_num_value_count, c3_num_sum, c3_num_max,
    c3_den_count, c3_den_value_count, c3_den_sum, c3_den_max
from abflow_read_partials
where sealed
  and num_count + den_count + pre_count + den_pre_count + contaminated_count + c0_rows > 0
on conflict (experiment_key, unit_id, metric_key) do update set
    num_count = unit_metric_partials.num_count + excluded.num_count,
    num_value_count = unit_metric_partials.num_value_count + excluded.num_value_count,
    num_sum = unit_metric_partials.num_sum + excluded.num_sum,
    num_max = greatest(unit_metric_partials.num_max, excluded.num_max),
    den_count = unit_metric_partials.den_count + excluded.den_count,
    den_value_count = unit_metric_partials.den_value_count + excluded.den_value_count,
    den_sum = unit_metric_partials.den_sum + excluded.den_sum,
    den_max = greatest(unit_metric_partials.den_max, excluded.den_max),
    pre_count = unit_metric_partials.pre_count + excluded.pre_count,
    pre_value_count = unit_metric_partials.pre_value_count + excluded.pre_value_count,
    pre_sum = unit_metric_partials.pre_sum + excluded.pre_sum,
    pre_max = greatest(unit_metric_partials.pre_max, excluded.pre_max),
    den_pre_count = unit_metric_partials.den_pre_count + excluded.den_pre_count,
    den_pre_value_count = unit_metric_partials.den_pre_value_count + excluded.den_pre_value_count,
    den_pre_sum = unit_metric_partials.den_pre_sum + excluded.den_pre_sum,
    den_pre_max = greatest(unit_metric_partials.den_pre_max, excluded.den_pre_max),
    contaminated_count = unit_metric_partials.contaminated_count + excluded.contaminated_count,
    c0_rows = unit_metric_partials.c0_rows + excluded.c0_rows,
    c0_num_count = unit_metric_partials.c0_num_count + excluded.c0_num_count,
    c0_num_value_count = unit_metric_partials.c0_num_value_count + excluded.c0_num_value_count,
    c0_num_sum = unit_metric_partials.c0_num_sum + excluded.c0_num_sum,
    c0_num_max = greatest(unit_metric_partials.c0_num_max, excluded.c0_num_max),
    c0_den_count = unit_metric_partials.c0_den_count + excluded.c0_den_count,
    c0_den_value_count = unit_metric_partials.c0_den_value_count + excluded.c0_den_value_count,
    c0_den_sum = unit_metric_partials.c0_den_sum + excluded.c0_den_sum,
    c0_den_max = greatest(unit_metric_partials.c0_den_max, excluded.c0_den_max),
    c1_num_count = unit_metric_partials.c1_num_count + excluded.c1_num_count,
    c1_num_value_count = unit_metric_partials.c1_num_value_count + excluded.c1_num_value_count,
    c1_num_sum = unit_metric_partials.c1_num_sum + excluded.c1_num_sum,
    c1_num_max = greatest(unit_metric_partials.c1_num_max, excluded.c1_num_max),
    c1_den_count = unit_metric_partials.c1_den_count + excluded.c1_den_count,
    c1_den_value_count = unit_metric_partials.c1_den_value_count + excluded.c1_den_value_count,
    c1_den_sum = unit_metric_partials.c1_den_sum + excluded.c1_den_sum,
    c1_den_max = greatest(unit_metric_partials.c1_den_max, excluded.c1_den_max),
    c2_num_count = unit_metric_partials.c2_num_count + excluded.c2_num_count,
    c2_num_value_count = unit_metric_partials.c2_num_value_count + excluded.c2_num_value_count,
    c2_num_sum = unit_metric_partials.c2_num_sum + excluded.c2_num_sum,
    c2_num_max = greatest(unit_metric_partials.c2_num_max, excluded.c2_num_max),
    c2_den_count = unit_metric_partials.c2_den_count + excluded.c2_den_count,
    c2_den_value_count = unit_metric_partials.c2_den_value_count + excluded.c2_den_value_count,
    c2_den_sum = unit_metric_partials.c2_den_sum + excluded.c2_den_sum,
    c2_den_max = greatest(unit_metric_partials.c2_den_max, excluded.c2_den_max),
    c3_num_count = unit_metric_partials.c3_num_count + excluded.c3_num_count,
    c3_num_value_count = unit_metric_partials.c3_num_value_count + excluded.c3_num_value_count,
    c3_num_sum = unit_metric_partials.c3_num_sum + excluded.c3_num_sum,
    c3_num_max = greatest(unit_metric_partials.c3_num_max, excluded.c3_num_max),
    c3_den_count = unit_metric_partials.c3_den_count + excluded.c3_den_count,
    c3_den_value_count = unit_metric_partials.c3_den_value_count + excluded.c3_den_value_count,
    c3_den_sum = unit_metric_partials.c3_den_sum + excluded.c3_den_sum,
    c3_den_max = greatest(unit_metric_partials.c3_den_max, excluded.c3_den_max)

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
