-- Segment label of every analysed unit: 'all' plus one 'dimension=level' per configured dimension,
-- the level read from the attributes of the unit's first exposure. The top 20 levels per
-- dimension by units keep their name; the rest fold into '(other)'. Materialised as
-- abflow_unit_segments.
--
-- unit_levels is a template: abflow/warehouse/plan.py repeats it once per configured dimension
-- (UNION ALL), with 'DIMENSION' replaced by the dimension's name (a validated key, rendered as a
-- quoted JSON path in each dialect's syntax); without segments only the 'all' rows remain.
-- Several first-exposure rows at the same instant: the smallest level wins, on every engine.
--
-- Bandits (allocation: bandit) also label every unit with the allocation period of its first
-- exposure, '#period=N' (a '#' no dimension key can start with): bandit_periods is a parameter
-- table of bound period boundaries (period_label, period_start, period_end; period_end NULL for
-- the period still running), one row per period of the reweight history, empty for fixed
-- allocation. The metric pass then returns per-(arm, period) sufficient statistics in the same
-- one pass over events, for the period-stratified estimates (abflow/bandit_periods.py).

with

unit_levels as (
    select
        u.unit_id,
        u.variant_key,
        'DIMENSION' as dimension,
        min(coalesce(a.attributes ->> 'DIMENSION', '(missing)')) as level
    from abflow_units as u
    inner join source_assignments as a
        on a.experiment_key = :experiment_key
        and a.unit_id = u.unit_id
        and a.assigned_at = u.first_exposed_at
    group by u.unit_id, u.variant_key
),

unit_periods as (
    -- the period of the unit's first exposure: periods are half-open [start, end)
    select u.unit_id, u.variant_key, p.period_label
    from abflow_units as u
    inner join bandit_periods as p
        on u.first_exposed_at >= p.period_start
        and (p.period_end is null or u.first_exposed_at < p.period_end)
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
            as segment
    from unit_levels as ul
    inner join level_ranks as lr
        on lr.dimension = ul.dimension
        and lr.level = ul.level
    union all
    select unit_id, variant_key, period_label as segment
    from unit_periods
)

select * from final
