-- Incremental refresh: the small bookkeeping statements, one per "-- name:" block (each block is
-- one statement, executed on its own with bound parameters). The events are read by
-- incremental_stats.sql.

-- name: lock
-- One refresh per experiment at a time: the partials are read-modify-write.
select pg_advisory_xact_lock(hashtextextended('abflow.incremental:' || %(experiment_key)s, 0))

-- name: read_state
select watermark, sealed_before, definition_hash
from refresh_state
where experiment_key = %(experiment_key)s

-- name: drop_temp_tables
-- The temporary tables are dropped on commit; dropping them first also allows a second
-- extraction in the same transaction (e.g. a full pass and a refresh compared in one snapshot).
-- Qualified with pg_temp so a permanent table of the same name can never be dropped.
drop table if exists pg_temp.abflow_refresh_units, pg_temp.abflow_unit_segments, pg_temp.abflow_units,
    pg_temp.abflow_metric_events

-- name: refresh_units
-- Every analysed unit now, and every unit analysed at the last refresh, with what changed:
-- 'new' / 'moved' (first exposure differs) units are recomputed from all their events, 'gone'
-- units are forgotten, 'same' units keep their sealed partials and only the events not sealed
-- yet are read for them.
create temporary table abflow_refresh_units on commit drop as

with

current_units as (
    select unit_id, first_exposed_at
    from abflow_units
),

seen_units as (
    select unit_id, first_exposed_at
    from unit_exposures_seen
    where experiment_key = %(experiment_key)s
      and not %(full)s
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

-- name: analyze_refresh_units
analyze abflow_refresh_units

-- name: forget_experiment_partials
delete from unit_metric_partials
where experiment_key = %(experiment_key)s

-- name: forget_experiment_seen
delete from unit_exposures_seen
where experiment_key = %(experiment_key)s

-- name: forget_changed_units
delete from unit_metric_partials as p
using abflow_refresh_units as r
where p.experiment_key = %(experiment_key)s
  and p.unit_id = r.unit_id
  and r.status <> 'same'

-- name: forget_gone_seen
delete from unit_exposures_seen as s
using abflow_refresh_units as r
where s.experiment_key = %(experiment_key)s
  and s.unit_id = r.unit_id
  and r.status = 'gone'

-- name: remember_seen
insert into unit_exposures_seen (experiment_key, unit_id, first_exposed_at)
select %(experiment_key)s, unit_id, first_exposed_at
from abflow_refresh_units
where status in ('new', 'moved')
on conflict (experiment_key, unit_id) do update
    set first_exposed_at = excluded.first_exposed_at

-- name: write_state
insert into refresh_state
    (experiment_key, watermark, sealed_before, definition_hash, mode, refreshed_at)
values (%(experiment_key)s, %(as_of)s, %(sealed_before)s, %(definition_hash)s, %(mode)s, now())
on conflict (experiment_key) do update set
    watermark = excluded.watermark,
    sealed_before = excluded.sealed_before,
    definition_hash = excluded.definition_hash,
    mode = excluded.mode,
    refreshed_at = excluded.refreshed_at
