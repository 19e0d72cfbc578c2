-- Analysed units of one experiment as a session temporary table: first exposure per unit, units
-- seen in more than one variant or in an unknown variant excluded. Built once per extraction and
-- ANALYZEd so the one pass over events gets a plan based on real row counts.
create temporary table abflow_units on commit drop as

with

raw_exposures as (
    -- a NULL variant is an unknown variant; a NULL unit id is no unit at all (GX counts both)
    select unit_id, coalesce(variant_key, '(null)') as variant_key, assigned_at
    from {assignments}
    where experiment_key = %(experiment_key)s
      and unit_id is not null
      and assigned_at >= %(start_at)s
      and assigned_at <= %(as_of)s
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
      and variant_key = any(cast(%(variants)s as text[]))
)

select * from final
