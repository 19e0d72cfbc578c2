-- Analysed units of one experiment: first exposure per unit, units seen in more than one variant
-- or in an unknown variant excluded. Materialised once per extraction as abflow_units (a
-- temporary table, ANALYZEd on PostgreSQL) so the one pass over events gets a plan based on real
-- row counts; inlined as a CTE on engines without temporary tables.
--
-- Canonical SQL (see abflow/warehouse/dialects.py): PostgreSQL syntax restricted to what sqlglot
-- renders for every engine; :name placeholders are bound values, `in (:list)` expands to one
-- placeholder per element; source_assignments is replaced by the configured source relation.

with

raw_exposures as (
    -- a NULL variant is an unknown variant; a NULL unit id is no unit at all (GX counts both)
    select unit_id, coalesce(variant_key, '(null)') as variant_key, assigned_at
    from source_assignments
    where experiment_key = :experiment_key
      and unit_id is not null
      and assigned_at >= :start_at
      and assigned_at <= :as_of
),

first_exposures as (
    -- min = max instead of count(distinct): plain aggregates hash, a distinct aggregate sorts
    select
        unit_id,
        min(assigned_at) as first_exposed_at,
        min(variant_key) as variant_key,
        min(variant_key) = max(variant_key) as single_variant
    from raw_exposures
    group by unit_id
),

final as (
    select unit_id, first_exposed_at, variant_key
    from first_exposures
    where single_variant
      and variant_key in (:variants)
)

select * from final
