-- Sufficient statistics per metric x variant x segment from per-unit values: the one final step
-- shared by the full pass (metric_stats.sql) and the incremental refresh (incremental_stats.sql),
-- which each supply the relation unit_values(unit_id, variant_key, metric_id, y, x, c, d,
-- contaminated) as a CTE. Reads abflow_unit_segments (unit_segments.sql) and
-- abflow_metric_events (metric_events.sql).
-- Units without a unit_values row had no events of the metric: they add 0 to the sums of
-- any/sum/count metrics (counted from the exposed units) and nothing to mean/max metrics.
--
-- Capping (winsorization): a capped metric gets two rows per variant and segment, `capped`
-- false (the raw values) and true (each per-unit value clamped to [cap_lower, cap_upper]), from
-- the same per-unit values: the events are read once. Percentile caps are PostgreSQL's
-- percentile_cont (linear interpolation between the order statistics at p*(N-1)) over the
-- per-unit values of all analysed units pooled across arms, computed here with row_number()
-- because exact percentile functions are approximate on some engines. Units without events
-- take part as the zeros they are, without being materialised: explicit values >= 0 are shifted
-- up by the number of such zeros in the ranking, and a rank no explicit value holds is a zero.
-- Each of y, x (numerator / denominator) and the CUPED covariates c, d gets its own cap.

with

all_units as (
    select count(*) as units
    from abflow_unit_segments
    where segment = 'all'
),

metric_nulls as (
    -- what a unit without events of the metric holds: is its y, x, c, d NULL or 0?
    select distinct
        metric_id,
        metric_key,
        y_agg in ('any', 'sum', 'count') as y_zero,
        coalesce(x_agg in ('sum', 'count'), false) as x_zero,
        c_agg is not null as c_zero,
        coalesce(d_agg in ('sum', 'count', 'mean', 'max'), false) as d_zero
    from abflow_metric_events
),

cap_specs as (
    -- one row per capped variable: y and c take the numerator's capping, x and d the
    -- denominator's; zero_filled says whether units without events hold 0 for it
    select distinct
        metric_id, 'y' as variable, num_cap_type as cap_type, num_cap_lower as cap_lower,
        num_cap_upper as cap_upper, num_cap_ignore_zeros as ignore_zeros,
        y_agg in ('any', 'sum', 'count') as zero_filled
    from abflow_metric_events
    where num_cap_type is not null
    union all
    select distinct
        metric_id, 'c', num_cap_type, num_cap_lower, num_cap_upper, num_cap_ignore_zeros,
        y_agg in ('any', 'sum', 'count')
    from abflow_metric_events
    where num_cap_type is not null and c_agg is not null
    union all
    select distinct
        metric_id, 'x', den_cap_type, den_cap_lower, den_cap_upper, den_cap_ignore_zeros,
        y_agg in ('any', 'sum', 'count') and x_agg in ('sum', 'count')
    from abflow_metric_events
    where den_cap_type is not null and x_agg is not null
    union all
    select distinct
        metric_id, 'd', den_cap_type, den_cap_lower, den_cap_upper, den_cap_ignore_zeros,
        y_agg in ('any', 'sum', 'count')
    from abflow_metric_events
    where den_cap_type is not null and d_agg is not null
),

cap_values as (
    -- the explicit per-unit values each percentile cap is taken over (units analysed for the
    -- metric: y not null), zeros left out when ignore_zeros
    select metric_id, variable, v, ignore_zeros, zero_filled
    from (
        select
            uv.metric_id,
            cs.variable,
            cs.ignore_zeros,
            cs.zero_filled,
            case cs.variable
                when 'y' then uv.y
                when 'x' then uv.x
                when 'c' then uv.c
                else uv.d
            end as v
        from abflow_unit_values as uv
        inner join cap_specs as cs
            on cs.metric_id = uv.metric_id
            and cs.cap_type = 'percentile'
        where uv.y is not null
    ) as picked
    where v is not null
      and not (ignore_zeros and v = 0.0)
),

value_counts as (
    -- per metric: units with a y (the implicit zeros are the analysed units without a row)
    select metric_id, count(*) as units
    from abflow_unit_values
    where y is not null
    group by metric_id
),

ranked_values as (
    select
        cv.metric_id,
        cv.variable,
        cv.v,
        -- 0-based rank among all values once the implicit zeros are placed before v >= 0
        row_number() over (partition by cv.metric_id, cv.variable order by cv.v) - 1
            + case when cv.v >= 0.0 then iz.zeros else 0 end as value_rank,
        count(*) over (partition by cv.metric_id, cv.variable) + iz.zeros as n
    from cap_values as cv
    inner join (
        select
            cs.metric_id,
            cs.variable,
            case
                when cs.zero_filled and not cs.ignore_zeros
                    then au.units - coalesce(vc.units, 0)
                else 0
            end as zeros
        from cap_specs as cs
        cross join all_units as au
        left join value_counts as vc on vc.metric_id = cs.metric_id
    ) as iz
        on iz.metric_id = cv.metric_id
        and iz.variable = cv.variable
),

positioned as (
    -- percentile_cont: position p * (n - 1), its floor k and the fraction towards k + 1
    select
        metric_id,
        variable,
        v,
        value_rank,
        floor(cs_lower * (cast(n as double precision) - 1.0)) as lower_k,
        cs_lower * (cast(n as double precision) - 1.0)
            - floor(cs_lower * (cast(n as double precision) - 1.0)) as lower_frac,
        floor(cs_upper * (cast(n as double precision) - 1.0)) as upper_k,
        cs_upper * (cast(n as double precision) - 1.0)
            - floor(cs_upper * (cast(n as double precision) - 1.0)) as upper_frac
    from (
        select rv.*, cs.cap_lower as cs_lower, cs.cap_upper as cs_upper
        from ranked_values as rv
        inner join cap_specs as cs
            on cs.metric_id = rv.metric_id
            and cs.variable = rv.variable
    ) as with_spec
),

percentile_caps as (
    -- a rank no explicit value holds is an implicit zero
    select
        metric_id,
        variable,
        coalesce(max(case when value_rank = lower_k then v end), 0.0)
            + max(lower_frac) * (
                coalesce(max(case when value_rank = lower_k + 1 then v end), 0.0)
                - coalesce(max(case when value_rank = lower_k then v end), 0.0)
            ) as pct_lower,
        coalesce(max(case when value_rank = upper_k then v end), 0.0)
            + max(upper_frac) * (
                coalesce(max(case when value_rank = upper_k + 1 then v end), 0.0)
                - coalesce(max(case when value_rank = upper_k then v end), 0.0)
            ) as pct_upper
    from positioned
    group by metric_id, variable
),

variable_caps as (
    select
        cs.metric_id,
        cs.variable,
        case
            when cs.cap_type = 'absolute' then cs.cap_lower
            when cs.cap_lower is not null then pc.pct_lower
        end as cap_lower,
        case
            when cs.cap_type = 'absolute' then cs.cap_upper
            when cs.cap_upper is not null then pc.pct_upper
        end as cap_upper
    from cap_specs as cs
    left join percentile_caps as pc
        on pc.metric_id = cs.metric_id
        and pc.variable = cs.variable
),

metric_versions as (
    -- every metric uncapped; capped metrics once more with their caps (one row per metric)
    select metric_id, false as capped,
        cast(null as double precision) as y_lower, cast(null as double precision) as y_upper,
        cast(null as double precision) as x_lower, cast(null as double precision) as x_upper,
        cast(null as double precision) as c_lower, cast(null as double precision) as c_upper,
        cast(null as double precision) as d_lower, cast(null as double precision) as d_upper
    from metric_nulls
    union all
    select
        metric_id,
        true,
        max(case when variable = 'y' then cap_lower end),
        max(case when variable = 'y' then cap_upper end),
        max(case when variable = 'x' then cap_lower end),
        max(case when variable = 'x' then cap_upper end),
        max(case when variable = 'c' then cap_lower end),
        max(case when variable = 'c' then cap_upper end),
        max(case when variable = 'd' then cap_lower end),
        max(case when variable = 'd' then cap_upper end)
    from variable_caps
    group by metric_id
),

version_values as (
    -- per-unit values as analysed in each version: clamped into [lower, upper] when capped
    -- (a missing bound or value compares as unknown and leaves the value as it is)
    select
        uv.unit_id,
        uv.variant_key,
        uv.metric_id,
        mv.capped,
        case when uv.y > mv.y_upper then mv.y_upper when uv.y < mv.y_lower then mv.y_lower
            else uv.y end as y,
        case when uv.x > mv.x_upper then mv.x_upper when uv.x < mv.x_lower then mv.x_lower
            else uv.x end as x,
        case when uv.c > mv.c_upper then mv.c_upper when uv.c < mv.c_lower then mv.c_lower
            else uv.c end as c,
        case when uv.d > mv.d_upper then mv.d_upper when uv.d < mv.d_lower then mv.d_lower
            else uv.d end as d,
        uv.contaminated
    from abflow_unit_values as uv
    inner join metric_versions as mv on mv.metric_id = uv.metric_id
),

segment_values as (
    -- each value in each segment of its unit: 'all' with the unit's own variant (every analysed
    -- unit is in it, so no join), the dimensions and bandit periods through the unit's segments
    select
        metric_id,
        capped,
        variant_key,
        'all' as segment,
        y,
        x,
        c,
        d,
        contaminated
    from version_values
    union all
    select
        vv.metric_id,
        vv.capped,
        us.variant_key,
        us.segment,
        vv.y,
        vv.x,
        vv.c,
        vv.d,
        vv.contaminated
    from version_values as vv
    inner join abflow_unit_segments as us
        on us.unit_id = vv.unit_id
        and us.segment <> 'all'
),

value_sums as (
    select
        metric_id,
        capped,
        variant_key,
        segment,
        count(y) as units,
        sum(y) as sum,
        sum(y * y) as sum_squares,
        sum(x) as denominator_sum,
        sum(x * x) as denominator_sum_squares,
        sum(x * y) as sum_products,
        sum(c) filter (where y is not null) as covariate_sum,
        sum(c * c) filter (where y is not null) as covariate_sum_squares,
        sum(c * y) as covariate_sum_products,
        sum(d) filter (where y is not null) as denominator_covariate_sum,
        sum(d * d) filter (where y is not null) as denominator_covariate_sum_squares,
        sum(d * x) as denominator_covariate_sum_products,
        sum(c * d) as covariate_cross_sum_products,
        sum(y * d) as numerator_denominator_covariate_sum_products,
        sum(c * x) as covariate_denominator_sum_products,
        count(*) filter (where contaminated) as contaminated_units
    from segment_values
    group by metric_id, capped, variant_key, segment
),

exposed as (
    select variant_key, segment, count(*) as exposed_units
    from abflow_unit_segments
    group by variant_key, segment
),

versions as (
    -- what a unit without events adds in each version: its zeros, clamped like any value
    select
        mv.*,
        m.metric_key,
        m.y_zero,
        m.x_zero,
        m.c_zero,
        m.d_zero,
        m.y_zero and m.x_zero and m.c_zero and m.d_zero as all_zero,
        case when 0.0 > mv.y_upper then mv.y_upper when 0.0 < mv.y_lower then mv.y_lower
            else 0.0 end as zy,
        case when 0.0 > mv.x_upper then mv.x_upper when 0.0 < mv.x_lower then mv.x_lower
            else 0.0 end as zx,
        case when 0.0 > mv.c_upper then mv.c_upper when 0.0 < mv.c_lower then mv.c_lower
            else 0.0 end as zc,
        case when 0.0 > mv.d_upper then mv.d_upper when 0.0 < mv.d_lower then mv.d_lower
            else 0.0 end as zd
    from metric_versions as mv
    inner join metric_nulls as m on m.metric_id = mv.metric_id
),

joined as (
    select
        v.*,
        ex.variant_key,
        ex.segment,
        ex.exposed_units,
        vs.units as value_units,
        vs.sum as s_y,
        vs.sum_squares as s_yy,
        vs.denominator_sum as s_x,
        vs.denominator_sum_squares as s_xx,
        vs.sum_products as s_xy,
        vs.covariate_sum as s_c,
        vs.covariate_sum_squares as s_cc,
        vs.covariate_sum_products as s_cy,
        vs.denominator_covariate_sum as s_d,
        vs.denominator_covariate_sum_squares as s_dd,
        vs.denominator_covariate_sum_products as s_dx,
        vs.covariate_cross_sum_products as s_cd,
        vs.numerator_denominator_covariate_sum_products as s_yd,
        vs.covariate_denominator_sum_products as s_cx,
        coalesce(vs.contaminated_units, 0) as contaminated_units,
        -- units without events of the metric, each adding its (clamped) zeros to the sums
        cast(
            case when v.y_zero then ex.exposed_units - coalesce(vs.units, 0) else 0 end
            as double precision
        ) as missing
    from exposed as ex
    cross join versions as v
    left join value_sums as vs
        on vs.metric_id = v.metric_id
        and vs.capped = v.capped
        and vs.variant_key = ex.variant_key
        and vs.segment = ex.segment
),

final as (
    select
        metric_key,
        variant_key,
        segment,
        capped,
        exposed_units,
        case when y_zero then exposed_units else coalesce(value_units, 0) end as units,
        coalesce(s_y, 0.0) + missing * zy as sum,
        coalesce(s_yy, 0.0) + missing * zy * zy as sum_squares,
        case when x_zero then coalesce(s_x, 0.0) + missing * zx else s_x end as denominator_sum,
        case when x_zero then coalesce(s_xx, 0.0) + missing * zx * zx else s_xx end
            as denominator_sum_squares,
        case when x_zero and y_zero then coalesce(s_xy, 0.0) + missing * zx * zy else s_xy end
            as sum_products,
        case when c_zero and y_zero then coalesce(s_c, 0.0) + missing * zc else s_c end
            as covariate_sum,
        case when c_zero and y_zero then coalesce(s_cc, 0.0) + missing * zc * zc else s_cc end
            as covariate_sum_squares,
        case when c_zero and y_zero then coalesce(s_cy, 0.0) + missing * zc * zy else s_cy end
            as covariate_sum_products,
        case when all_zero then coalesce(s_d, 0.0) + missing * zd else s_d end
            as denominator_covariate_sum,
        case when all_zero then coalesce(s_dd, 0.0) + missing * zd * zd else s_dd end
            as denominator_covariate_sum_squares,
        case when all_zero then coalesce(s_dx, 0.0) + missing * zd * zx else s_dx end
            as denominator_covariate_sum_products,
        case when all_zero then coalesce(s_cd, 0.0) + missing * zc * zd else s_cd end
            as covariate_cross_sum_products,
        case when all_zero then coalesce(s_yd, 0.0) + missing * zy * zd else s_yd end
            as numerator_denominator_covariate_sum_products,
        case when all_zero then coalesce(s_cx, 0.0) + missing * zc * zx else s_cx end
            as covariate_denominator_sum_products,
        contaminated_units,
        y_lower as cap_lower,
        y_upper as cap_upper,
        x_lower as denominator_cap_lower,
        x_upper as denominator_cap_upper,
        c_lower as covariate_cap_lower,
        c_upper as covariate_cap_upper,
        d_lower as denominator_covariate_cap_lower,
        d_upper as denominator_covariate_cap_upper
    from joined
)

select * from final
order by metric_key, variant_key, segment, capped
