-- Sufficient statistics per metric x variant x segment from per-unit values: the one final step
-- shared by the full pass (metric_stats.sql) and the incremental refresh (incremental_stats.sql),
-- which each supply the relation unit_values(unit_id, metric_id, y, x, c, contaminated) as a CTE.
-- Reads abflow_unit_segments (unit_segments.sql) and abflow_metric_events (metric_events.sql).
-- Units without a unit_values row had no events of the metric: they add 0 to the sums of
-- any/sum/count metrics (counted from the exposed units) and nothing to mean/max metrics.

with

value_sums as (
    select
        uv.metric_id,
        us.variant_key,
        us.segment,
        count(uv.y) as units,
        sum(uv.y) as sum,
        sum(uv.y * uv.y) as sum_squares,
        sum(uv.x) as denominator_sum,
        sum(uv.x * uv.x) as denominator_sum_squares,
        sum(uv.x * uv.y) as sum_products,
        sum(uv.c) filter (where uv.y is not null) as covariate_sum,
        sum(uv.c * uv.c) filter (where uv.y is not null) as covariate_sum_squares,
        sum(uv.c * uv.y) as covariate_sum_products,
        count(*) filter (where uv.contaminated) as contaminated_units
    from unit_values as uv
    inner join abflow_unit_segments as us on us.unit_id = uv.unit_id
    group by uv.metric_id, us.variant_key, us.segment
),

exposed as (
    select variant_key, segment, count(*) as exposed_units
    from abflow_unit_segments
    group by variant_key, segment
),

metric_nulls as (
    -- what a unit without events of the metric holds: is its y, x, c NULL or 0?
    select distinct
        metric_id,
        metric_key,
        y_agg in ('any', 'sum', 'count') as y_zero,
        coalesce(x_agg in ('sum', 'count'), false) as x_zero,
        c_agg is not null as c_zero
    from abflow_metric_events
),

final as (
    select
        m.metric_key,
        ex.variant_key,
        ex.segment,
        ex.exposed_units,
        case when m.y_zero then ex.exposed_units else coalesce(vs.units, 0) end as units,
        coalesce(vs.sum, 0.0) as sum,
        coalesce(vs.sum_squares, 0.0) as sum_squares,
        coalesce(vs.denominator_sum, case when m.x_zero then 0.0 end) as denominator_sum,
        coalesce(vs.denominator_sum_squares, case when m.x_zero then 0.0 end)
            as denominator_sum_squares,
        coalesce(vs.sum_products, case when m.x_zero and m.y_zero then 0.0 end) as sum_products,
        coalesce(vs.covariate_sum, case when m.c_zero and m.y_zero then 0.0 end) as covariate_sum,
        coalesce(vs.covariate_sum_squares, case when m.c_zero and m.y_zero then 0.0 end)
            as covariate_sum_squares,
        coalesce(vs.covariate_sum_products, case when m.c_zero and m.y_zero then 0.0 end)
            as covariate_sum_products,
        coalesce(vs.contaminated_units, 0) as contaminated_units
    from exposed as ex
    cross join metric_nulls as m
    left join value_sums as vs
        on vs.metric_id = m.metric_id
        and vs.variant_key = ex.variant_key
        and vs.segment = ex.segment
)

select * from final
order by metric_key, variant_key, segment
