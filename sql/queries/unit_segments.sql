-- Segment label of every analysed unit: 'all' plus one 'dimension=level' per configured dimension,
-- the level read from the attributes of the unit's first exposure. The top 20 levels per
-- dimension by units keep their name; the rest fold into '(other)'.
create temporary table abflow_unit_segments on commit drop as

with

segment_dims as (
    select unnest(cast(%(segments)s as text[])) as dimension
),

first_attributes as (
    -- the first exposure's row (index on experiment_key, unit_id, assigned_at); ties at the same
    -- instant resolved by the attributes' own order, so reruns agree. Skipped without segments.
    select distinct on (u.unit_id) u.unit_id, u.variant_key, a.attributes
    from abflow_units as u
    inner join {assignments} as a
        on a.experiment_key = %(experiment_key)s
        and a.unit_id = u.unit_id
        and a.assigned_at = u.first_exposed_at
    where cardinality(cast(%(segments)s as text[])) > 0
    order by u.unit_id, a.attributes
),

unit_levels as (
    select f.unit_id, f.variant_key, d.dimension,
        coalesce(f.attributes ->> d.dimension, '(missing)') as level
    from first_attributes as f
    cross join segment_dims as d
),

level_ranks as (
    select
        dimension,
        level,
        row_number() over (partition by dimension order by count(*) desc, level) as level_rank
    from unit_levels
    group by dimension, level
),

final as (
    select unit_id, variant_key, 'all' as segment
    from abflow_units
    union all
    select
        ul.unit_id,
        ul.variant_key,
        ul.dimension || '=' || case when lr.level_rank <= 20 then ul.level else '(other)' end
    from unit_levels as ul
    inner join level_ranks as lr
        on lr.dimension = ul.dimension
        and lr.level = ul.level
)

select * from final
