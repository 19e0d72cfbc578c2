-- Quantile metrics: per metric x variant x segment the few order statistics the estimator needs
-- (abflow/stats/quantile.py: Yao, Li & Lu 2024 as in GrowthBook's gbstats QuantileStatistic):
-- the quantile q and the quantiles at the lower/upper rank bounds p- and p+, each interpolated
-- between two order statistics exactly as PostgreSQL's percentile_cont does (position
-- (n - 1) p + 1), plus n; for quantiles over events the per-unit moments of s (the unit's events
-- at or below q) and m (the unit's events) for the clustered variance (Deng, Knoblich & Lu 2018).
-- Order statistics come from row_number(), not percentile_cont / percentile_disc: sqlglot 30.30
-- renders `percentile_cont(0.9) within group (order by y)` as PERCENTILE_APPROX on Spark and
-- Databricks, APPROX_PERCENTILE on Trino, `QUANTILE_CONT(y, 0.9 ORDER BY y)` on DuckDB and keeps
-- the WITHIN GROUP form BigQuery lacks as an aggregate; row_number() is exact on every engine.
--
-- abflow/warehouse/plan.py supplies quantile_defs (metric_id, metric_key, level, nu,
-- zero_fill) as bound values. Quantiles over units read the per-unit values of the one pass over
-- events, the stage abflow_unit_values. Quantiles over events need every post-exposure event
-- value, which no per-unit stage keeps: plan.py prepends quantile_events, the event rows
-- (phased_events) of metric_stats.sql's canonical scan restricted to the event-level quantile
-- metrics (a constant-false scan the engines skip when there are none).

with

unit_observations as (
    -- over units: every analysed unit; one without events holds 0 for sum/count aggregations
    -- (as in the means) and no value for mean/max
    select
        q.metric_id,
        us.variant_key,
        us.segment,
        us.unit_id,
        case when q.zero_fill = 1 then coalesce(uv.y, 0.0) else uv.y end as y
    from abflow_unit_segments as us
    cross join quantile_defs as q
    left join abflow_unit_values as uv
        on uv.unit_id = us.unit_id
        and uv.metric_id = q.metric_id
    where q.level = 'unit'
),

event_observations as (
    -- over events: each post-exposure event value, its unit is its cluster
    select
        q.metric_id,
        us.variant_key,
        us.segment,
        e.unit_id,
        e.value as y
    from quantile_events as e
    inner join quantile_defs as q on q.metric_id = e.metric_id
    inner join abflow_unit_segments as us on us.unit_id = e.unit_id
    where q.level = 'event' and e.num_post
),

observations as (
    select metric_id, variant_key, segment, unit_id, y from unit_observations where y is not null
    union all
    select metric_id, variant_key, segment, unit_id, y from event_observations where y is not null
),

ranked as (
    select
        metric_id,
        variant_key,
        segment,
        y,
        row_number() over (partition by metric_id, variant_key, segment order by y) as rn,
        cast(count(*) over (partition by metric_id, variant_key, segment) as double precision)
            as n
    from observations
),

positions as (
    -- 1-based positions of q, p- and p+ (levels clamped to [1e-8, 1 - 1e-8] as gbstats does)
    select
        r.metric_id,
        r.variant_key,
        r.segment,
        r.y,
        r.rn,
        r.n,
        (r.n - 1.0) * q.nu + 1.0 as h_quantile,
        (r.n - 1.0) * greatest(q.nu - :bound_z * sqrt(q.nu * (1.0 - q.nu) / r.n), 1e-8) + 1.0
            as h_lower,
        (r.n - 1.0) * least(q.nu + :bound_z * sqrt(q.nu * (1.0 - q.nu) / r.n), 1.0 - 1e-8) + 1.0
            as h_upper
    from ranked as r
    inner join quantile_defs as q on q.metric_id = r.metric_id
),

order_statistics as (
    -- the two order statistics around each position
    select
        metric_id,
        variant_key,
        segment,
        max(n) as n,
        max(h_quantile) as h_quantile,
        max(h_lower) as h_lower,
        max(h_upper) as h_upper,
        max(case when rn = floor(h_quantile) then y end) as quantile_at,
        max(case when rn = floor(h_quantile) + 1 then y end) as quantile_next,
        max(case when rn = floor(h_lower) then y end) as lower_at,
        max(case when rn = floor(h_lower) + 1 then y end) as lower_next,
        max(case when rn = floor(h_upper) then y end) as upper_at,
        max(case when rn = floor(h_upper) + 1 then y end) as upper_next
    from positions
    where rn >= floor(h_lower) and rn <= floor(h_upper) + 1
    group by metric_id, variant_key, segment
),

estimates as (
    -- linear interpolation (percentile_cont); past the last row the last value stands
    select
        metric_id,
        variant_key,
        segment,
        n,
        quantile_at + (h_quantile - floor(h_quantile))
            * (coalesce(quantile_next, quantile_at) - quantile_at) as quantile,
        lower_at + (h_lower - floor(h_lower)) * (coalesce(lower_next, lower_at) - lower_at)
            as quantile_lower,
        upper_at + (h_upper - floor(h_upper)) * (coalesce(upper_next, upper_at) - upper_at)
            as quantile_upper
    from order_statistics
),

unit_counts as (
    -- event level: per unit, its events at or below the arm's quantile (s) and all its events (m)
    select
        o.metric_id,
        o.variant_key,
        o.segment,
        cast(count(*) filter (where o.y <= e.quantile) as double precision) as below,
        cast(count(*) as double precision) as events
    from event_observations as o
    inner join estimates as e
        on e.metric_id = o.metric_id
        and e.variant_key = o.variant_key
        and e.segment = o.segment
    where o.y is not null
    group by o.metric_id, o.variant_key, o.segment, o.unit_id
),

cluster_moments as (
    select
        metric_id,
        variant_key,
        segment,
        count(*) as n_clusters,
        sum(below) as below_sum,
        sum(below * below) as below_sum_squares,
        sum(events) as events_sum,
        sum(events * events) as events_sum_squares,
        sum(below * events) as below_events_sum_products
    from unit_counts
    group by metric_id, variant_key, segment
),

final as (
    select
        q.metric_key,
        e.variant_key,
        e.segment,
        cast(e.n as bigint) as quantile_n,
        e.quantile,
        e.quantile_lower,
        e.quantile_upper,
        c.n_clusters,
        c.below_sum,
        c.below_sum_squares,
        c.events_sum,
        c.events_sum_squares,
        c.below_events_sum_products
    from estimates as e
    inner join quantile_defs as q on q.metric_id = e.metric_id
    left join cluster_moments as c
        on c.metric_id = e.metric_id
        and c.variant_key = e.variant_key
        and c.segment = e.segment
)

select * from final
order by metric_key, variant_key, segment
