-- Per-unit values of one experiment, in one pass over its events: one row per (unit, metric)
-- that has events, with the unit's value y, ratio denominator x, CUPED covariate c (ratios: of
-- the numerator), pre-exposure denominator d (ratio CUPED), contamination flag, and per
-- exposure-age cohort k (days 0-6, 7-13, 14-20, 21+ since exposure) whether the unit has a row
-- in it (in_k) and its value y_k and denominator x_k. metric_final.sql turns these rows into the
-- sufficient statistics (exposure_age.sql unpivots the cohorts for it); the incremental refresh
-- feeds the same final step from its merged partials (incremental_stats.sql, same columns).
-- Reads abflow_units (units.sql), abflow_metric_events (metric_events.sql) and the events source.
--
-- Shape (measured in benchmarks/, EXPLAIN at 5M events on PostgreSQL): the events scan joins
-- first exposures and the metric reads once by hash; duplicate removal and the per-(unit,
-- metric) aggregation share one sort (Sort -> Unique -> GroupAggregate, as a hand-written query
-- would). The unit's variant and first exposure ride along in the sort (one per unit, so they
-- split no group; +0.7 s at 5M events): the final step then sums the 'all' segment and the
-- exposure-age cohorts straight from these rows, without joining 1.4M rows back to the units
-- by a text key (~1 s per statement at 5M events). Only (unit, metric) pairs that have events
-- are aggregated, because a unit without events adds 0 (or NULL for mean/max) to every sum.
-- in_1..in_3 also require the unit to have been exposed for the cohort's first day by as_of.

{% from "macros.sql" import cohort_sides, cohort_values, from_lookback, in_window, on_side,
    partial_aggregates, phases, read_value, unit_value %}

with

unit_metric_events as (
    -- the single scan of events, joined to first exposures and to the metrics reading each
    -- event. Exact duplicate event rows count once: within one (unit, metric) an event is
    -- identified by (occurred_at, value, is_num, is_den) because the metric reads at most two
    -- event names, told apart by is_num / is_den. Only narrow keys go through the duplicate
    -- removal (no aggregation names: they depend on the metric and join back on 6 rows).
    -- abflow_event_filter(metric, side, properties) stands for the metrics' property filters:
    -- abflow/warehouse/plan.py replaces it with one predicate per side (values bound, property
    -- names as literal JSON paths), TRUE where no metric filters that side. An event counts on
    -- a side only if it passes that side's filter.
    -- (unit ids sort in byte order, collation "C": with the database's collation every
    -- comparison calls strcoll; dialects.py drops the COLLATE on other engines)
    select distinct
        u.unit_id collate "C" as unit_id,
        m.metric_id,
        u.first_exposed_at,
        e.occurred_at,
        {{ read_value("e") }} as value,
        {{ on_side("m", "num", "e.properties") }} as is_num,
        {{ on_side("m", "den", "e.properties") }} as is_den,
        -- the event's phase relative to the unit's exposure (post, in_lookback, early) and its
        -- exposure-age cohort, computed here once per row (this select's DISTINCT keeps them
        -- out of the aggregation; there, in the aggregates' FILTERs, each would be evaluated
        -- once per aggregate). They are functions of (first_exposed_at, occurred_at), so they
        -- change no duplicate.
        {{ phases("e.occurred_at", "u.first_exposed_at") }},
        -- the unit's variant, last: it splits no row of the unit, so the sort never compares it
        u.variant_key collate "C" as variant_key
    from abflow_units as u
    inner join source_events as e
        on e.unit_id = u.unit_id
        and e.occurred_at <= :as_of
        and {{ from_lookback("e.occurred_at", "u.first_exposed_at") }}
    inner join abflow_metric_events as m
        on m.event_name = e.event_name
        and {{ in_window("m", "e.occurred_at", "u.first_exposed_at") }}
    where ({{ on_side("m", "num", "e.properties") }}) or ({{ on_side("m", "den", "e.properties") }})
),

phased_events as (
    -- each row's phase relative to the unit's exposure, per side
    select
        unit_id,
        variant_key,
        metric_id,
        first_exposed_at,
        value,
        is_num and post as num_post,
        is_den and post as den_post,
        is_num and in_lookback as num_pre,
        is_den and in_lookback as den_pre,
        is_num and early as num_early,
        is_num,
        is_den,
        exposure_cohort
    from unit_metric_events
),

unit_metric_aggregates as (
    -- every aggregate a metric may use, per (unit, metric) with events; the metric's own
    -- aggregation picks from them below
    select
        unit_id,
        metric_id,
        first_exposed_at,
        min(variant_key) as variant_key,
        count(*) filter (where num_post) as num_count,
        sum(value) filter (where num_post) as num_sum,
        avg(value) filter (where num_post) as num_mean,
        max(value) filter (where num_post) as num_max,
        count(*) filter (where den_post) as den_count,
        sum(value) filter (where den_post) as den_sum,
        avg(value) filter (where den_post) as den_mean,
        max(value) filter (where den_post) as den_max,
        count(*) filter (where num_pre) as pre_count,
        sum(value) filter (where num_pre) as pre_sum,
        avg(value) filter (where num_pre) as pre_mean,
        max(value) filter (where num_pre) as pre_max,
        count(*) filter (where den_pre) as den_pre_count,
        sum(value) filter (where den_pre) as den_pre_sum,
        avg(value) filter (where den_pre) as den_pre_mean,
        max(value) filter (where den_pre) as den_pre_max,
        count(*) filter (where num_early) as early_count,
        -- per exposure-age cohort k: its rows (any side; they make the unit's cohort row) and
        -- the numerator and denominator aggregates of its events (cohorts 0-3 are after
        -- exposure, so is_num there is num_post)
        count(*) filter (where exposure_cohort in (0, 4)) as c0_rows,
        {% for group, side, k in cohort_sides %}
        {{ partial_aggregates(
            group, "is_%s and exposure_cohort = %d" % (side, k), zero_sum=false
        ) }}
        {{- "," if not loop.last }}
        {% endfor %}
    from phased_events
    -- (first_exposed_at and the variant are the unit's: one per group, no extra sort)
    group by unit_id, metric_id, first_exposed_at
),

metric_aggs as (
    select distinct metric_id, y_agg, x_agg, c_agg, d_agg
    from abflow_metric_events
),

unit_metric_values as (
    -- one row per (unit, metric) with events: value y, ratio denominator x, CUPED covariate c,
    -- pre-exposure ratio denominator d
    select
        a.unit_id collate "default" as unit_id,
        a.variant_key collate "default" as variant_key,
        a.metric_id,
        {{ unit_value("m.y_agg", "a", "num") }} as y,
        {{ unit_value("m.x_agg", "a", "den", any=false) }} as x,
        -- a unit without pre-period events has covariate 0 (Deng et al. 2013 fill)
        {{ unit_value("m.c_agg", "a", "pre", fill=true) }} as c,
        {{ unit_value("m.d_agg", "a", "den_pre", any=false, fill=true) }} as d,
        a.early_count > 0 as contaminated,
        -- exposure-age cohorts (exposure_age.sql unpivots them): in_k, whether the unit has a
        -- row in cohort k, and its value y_k and denominator x_k from the cohort's events,
        -- aggregated as y and x are (mean = sum / count of values, as avg computes it).
        -- (Aggregates no metric reads are 0 or NULL here: abflow/warehouse/plan.py prunes them.)
        {{ cohort_values("a", "a.first_exposed_at") }}
    from unit_metric_aggregates as a
    inner join metric_aggs as m on m.metric_id = a.metric_id
)

select * from unit_metric_values
