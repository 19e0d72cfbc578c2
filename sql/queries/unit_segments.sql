-- Segment label of every analysed unit: 'all' plus one 'dimension=level' per configured dimension.
-- The top 20 levels per dimension by units keep their name; the rest fold into '(other)'.
create temporary table abflow_unit_segments on commit drop as

with

segment_dims as (
    select unnest(cast(%(segments)s as text[])) as dimension
),

unit_levels as (
    select u.unit_id, d.dimension, coalesce(u.attributes ->> d.dimension, '(missing)') as level
    from abflow_units as u
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
    select unit_id, 'all' as segment
    from abflow_units
    union all
    select
        ul.unit_id,
        ul.dimension || '=' || case when lr.level_rank <= 20 then ul.level else '(other)' end
    from unit_levels as ul
    inner join level_ranks as lr
        on lr.dimension = ul.dimension
        and lr.level = ul.level
)

select * from final
