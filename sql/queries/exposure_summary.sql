-- Exposure health for one experiment: first-exposure units per variant, units seen in several
-- variants, unknown variant keys, and traffic per day. Reads assignments only.

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

per_unit as (
    select
        unit_id,
        min(assigned_at) as first_exposed_at,
        min(variant_key) as variant_key,
        count(distinct variant_key) as variant_count
    from raw_exposures
    group by unit_id
),

final as (
    select
        case when variant_count > 1 then '(multiple)' else variant_key end as variant_key,
        variant_count > 1 as multiple,
        not (variant_key = any(cast(%(variants)s as text[]))) and variant_count = 1 as unknown,
        count(*) as units,
        min(first_exposed_at) as first_exposed_at,
        max(first_exposed_at) as last_exposed_at,
        (array_agg(unit_id order by unit_id))[1:5] as sample_units
    from per_unit
    group by 1, 2, 3
)

select * from final
order by variant_key
