-- The rows the data-quality suites (expectations/*.json) validate, one "-- name:" block per
-- suite, for engines Great Expectations cannot reach (DuckDB, Spark): abflow/warehouse/
-- sql_checks.py wraps each block as a CTE `asset` and computes every expectation of the suite
-- as one aggregate over it, rendered for the warehouse's dialect like every other statement.
-- On PostgreSQL the same blocks, their values written as literals, are GX's query assets and
-- the source of the samples of failed checks (abflow/warehouse/quality.py asset_queries).

-- name: assignments
-- This experiment's exposures up to as_of, plus rows stamped NULL or in the future.
select experiment_key, unit_id, variant_key, assigned_at
from source_assignments
where experiment_key = :experiment_key
  and (assigned_at <= :as_of or assigned_at > :now or assigned_at is null)

-- name: events
-- Metric events of the experiment's units in the window, plus rows stamped NULL or future;
-- duplicate_of is set on every repeat of an identical (unit, event, time, value) row,
-- out_of_range on every value the metric SQL reads as missing; both hold the row's key
-- ('unit | event | time | value'), which the samples of a failed check show. The key is built
-- only for those rows; with ||, as concat_ws is missing on some engines and takes only text on
-- Spark, and every part coalesced, as || is NULL if one part is.
select
    e.unit_id,
    e.event_name,
    e.occurred_at,
    e.value,
    case
        when row_number() over (
            -- byte order (collation "C") for the text keys: ~4x faster than strcoll on
            -- PostgreSQL, the same partitions (dialects.py drops it on other engines)
            partition by e.unit_id collate "C", e.event_name collate "C", e.occurred_at, e.value
            order by e.occurred_at
        ) > 1 then coalesce(e.unit_id, '') || ' | ' || coalesce(e.event_name, '') || ' | '
            || coalesce(cast(e.occurred_at as text), '') || ' | '
            || coalesce(cast(e.value as text), '')
    end as duplicate_of,
    case when e.value is not null and not abs(e.value) <= :value_limit
        then coalesce(e.unit_id, '') || ' | ' || coalesce(e.event_name, '') || ' | '
            || coalesce(cast(e.occurred_at as text), '') || ' | ' || cast(e.value as text)
    end as out_of_range
from source_events as e
where e.unit_id in (
        select a.unit_id
        from source_assignments as a
        where a.experiment_key = :experiment_key
          and a.assigned_at <= :window_end
    )
  and (e.event_name in (:event_names) or e.event_name is null)
  and (
      (e.occurred_at >= :events_from and e.occurred_at <= :window_end)
      or e.occurred_at > :now
      or e.occurred_at is null
  )

-- name: variant_stats
-- Analysed units per configured variant: first exposure in the window, one variant only.
select variant_key, count(*) as units
from (
    select
        unit_id,
        min(coalesce(variant_key, '(null)')) as variant_key,
        count(distinct coalesce(variant_key, '(null)')) as variant_count
    from source_assignments
    where experiment_key = :experiment_key
      and unit_id is not null
      and assigned_at >= :start_at
      and assigned_at <= :window_end
    group by unit_id
) as per_unit
where variant_count = 1
  and variant_key in (:variants)
group by variant_key
