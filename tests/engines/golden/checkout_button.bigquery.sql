-- abflow sql: experiment checkout_button, dialect bigquery, as of 2026-11-21T00:00:00+00:00
-- sources: assignments = assignments, events = events
-- Placeholders are bound values (listed above each statement), never SQL text.
-- Rendered from sql/queries/*.sql (canonical) by sqlglot 30.30.0; rendered only on this engine.

-- == 1. sufficient statistics and exposure summary ==

-- [1] units: materialised as temporary table abflow_units
-- parameters:
--   as_of = 2026-11-21T00:00:00+00:00
--   experiment_key = 'checkout_button'
--   start_at = 2026-11-01T00:00:00+00:00
--   variants_1 = 'control'
--   variants_2 = 'green'
CREATE TEMP TABLE abflow_units AS
WITH raw_exposures AS (
  SELECT
    unit_id,
    COALESCE(variant_key, '(null)') AS variant_key,
    assigned_at
  FROM `assignments`
  WHERE
    experiment_key = @experiment_key
    AND unit_id IS NOT NULL
    AND assigned_at >= @start_at
    AND assigned_at <= @as_of
), first_exposures AS (
  SELECT
    unit_id,
    MIN(assigned_at) AS first_exposed_at,
    MIN(variant_key) AS variant_key,
    MIN(variant_key) = MAX(variant_key) AS single_variant
  FROM raw_exposures
  GROUP BY
    unit_id
), final AS (
  SELECT
    unit_id,
    first_exposed_at,
    variant_key
  FROM first_exposures
  WHERE
    single_variant AND variant_key IN (@variants_1, @variants_2)
)
SELECT
  *
FROM final;

-- [2] unit_segments: materialised as temporary table abflow_unit_segments
-- parameters:
--   bandit_periods_1_period_end = NULL
--   bandit_periods_1_period_label = NULL
--   bandit_periods_1_period_start = NULL
--   experiment_key = 'checkout_button'
CREATE TEMP TABLE abflow_unit_segments AS
WITH bandit_periods AS (
  SELECT
    CAST(@bandit_periods_1_period_label AS STRING) AS period_label,
    CAST(@bandit_periods_1_period_start AS TIMESTAMP) AS period_start,
    CAST(@bandit_periods_1_period_end AS TIMESTAMP) AS period_end
  WHERE
    FALSE
), unit_levels AS (
  SELECT
    u.unit_id,
    u.variant_key,
    'country' AS dimension,
    MIN(COALESCE(JSON_EXTRACT_SCALAR(a.attributes, '$.country'), '(missing)')) AS level
  FROM abflow_units AS u
  INNER JOIN `assignments` AS a
    ON a.experiment_key = @experiment_key
    AND a.unit_id = u.unit_id
    AND a.assigned_at = u.first_exposed_at
  GROUP BY
    u.unit_id,
    u.variant_key
), unit_periods AS (
  SELECT
    u.unit_id,
    u.variant_key,
    p.period_label
  FROM abflow_units AS u
  INNER JOIN bandit_periods AS p
    ON u.first_exposed_at >= p.period_start
    AND (
      p.period_end IS NULL OR u.first_exposed_at < p.period_end
    )
), level_ranks AS (
  SELECT
    dimension,
    level,
    ROW_NUMBER() OVER (PARTITION BY dimension ORDER BY COUNT(*) DESC NULLS FIRST, level NULLS LAST) AS level_rank
  FROM unit_levels
  GROUP BY
    dimension,
    level
), final AS (
  SELECT
    unit_id,
    variant_key,
    'all' AS segment
  FROM abflow_units
  UNION ALL
  SELECT
    ul.unit_id,
    ul.variant_key,
    ul.dimension || '=' || CASE WHEN lr.level_rank <= 20 THEN ul.level ELSE '(other)' END AS segment
  FROM unit_levels AS ul
  INNER JOIN level_ranks AS lr
    ON lr.dimension = ul.dimension AND lr.level = ul.level
  UNION ALL
  SELECT
    unit_id,
    variant_key,
    period_label AS segment
  FROM unit_periods
)
SELECT
  *
FROM final;

-- [3] metric_events: materialised as temporary table abflow_metric_events
-- parameters:
--   lookback_days = 14
--   metric_defs_1_den_agg = NULL
--   metric_defs_1_den_event = NULL
--   metric_defs_1_kind = 'proportion'
--   metric_defs_1_metric_id = 1
--   metric_defs_1_metric_key = 'purchase_rate'
--   metric_defs_1_num_agg = 'any'
--   metric_defs_1_num_event = 'purchase'
--   metric_defs_1_window_seconds = 604800
--   metric_defs_2_den_agg = NULL
--   metric_defs_2_den_event = NULL
--   metric_defs_2_kind = 'mean'
--   metric_defs_2_metric_id = 2
--   metric_defs_2_metric_key = 'revenue'
--   metric_defs_2_num_agg = 'sum'
--   metric_defs_2_num_event = 'purchase'
--   metric_defs_2_window_seconds = NULL
--   metric_defs_3_den_agg = 'count'
--   metric_defs_3_den_event = 'impression'
--   metric_defs_3_kind = 'ratio'
--   metric_defs_3_metric_id = 3
--   metric_defs_3_metric_key = 'ctr'
--   metric_defs_3_num_agg = 'count'
--   metric_defs_3_num_event = 'click'
--   metric_defs_3_window_seconds = NULL
--   metric_defs_4_den_agg = NULL
--   metric_defs_4_den_event = NULL
--   metric_defs_4_kind = 'mean'
--   metric_defs_4_metric_id = 4
--   metric_defs_4_metric_key = 'latency_ms'
--   metric_defs_4_num_agg = 'mean'
--   metric_defs_4_num_event = 'page_load'
--   metric_defs_4_window_seconds = NULL
CREATE TEMP TABLE abflow_metric_events AS
WITH metric_defs AS (
  SELECT
    CAST(@metric_defs_1_metric_id AS INT64) AS metric_id,
    CAST(@metric_defs_1_metric_key AS STRING) AS metric_key,
    CAST(@metric_defs_1_kind AS STRING) AS kind,
    CAST(@metric_defs_1_num_event AS STRING) AS num_event,
    CAST(@metric_defs_1_num_agg AS STRING) AS num_agg,
    CAST(@metric_defs_1_den_event AS STRING) AS den_event,
    CAST(@metric_defs_1_den_agg AS STRING) AS den_agg,
    CAST(@metric_defs_1_window_seconds AS INT64) AS window_seconds
  UNION ALL
  SELECT
    CAST(@metric_defs_2_metric_id AS INT64) AS metric_id,
    CAST(@metric_defs_2_metric_key AS STRING) AS metric_key,
    CAST(@metric_defs_2_kind AS STRING) AS kind,
    CAST(@metric_defs_2_num_event AS STRING) AS num_event,
    CAST(@metric_defs_2_num_agg AS STRING) AS num_agg,
    CAST(@metric_defs_2_den_event AS STRING) AS den_event,
    CAST(@metric_defs_2_den_agg AS STRING) AS den_agg,
    CAST(@metric_defs_2_window_seconds AS INT64) AS window_seconds
  UNION ALL
  SELECT
    CAST(@metric_defs_3_metric_id AS INT64) AS metric_id,
    CAST(@metric_defs_3_metric_key AS STRING) AS metric_key,
    CAST(@metric_defs_3_kind AS STRING) AS kind,
    CAST(@metric_defs_3_num_event AS STRING) AS num_event,
    CAST(@metric_defs_3_num_agg AS STRING) AS num_agg,
    CAST(@metric_defs_3_den_event AS STRING) AS den_event,
    CAST(@metric_defs_3_den_agg AS STRING) AS den_agg,
    CAST(@metric_defs_3_window_seconds AS INT64) AS window_seconds
  UNION ALL
  SELECT
    CAST(@metric_defs_4_metric_id AS INT64) AS metric_id,
    CAST(@metric_defs_4_metric_key AS STRING) AS metric_key,
    CAST(@metric_defs_4_kind AS STRING) AS kind,
    CAST(@metric_defs_4_num_event AS STRING) AS num_event,
    CAST(@metric_defs_4_num_agg AS STRING) AS num_agg,
    CAST(@metric_defs_4_den_event AS STRING) AS den_event,
    CAST(@metric_defs_4_den_agg AS STRING) AS den_agg,
    CAST(@metric_defs_4_window_seconds AS INT64) AS window_seconds
), metric_reads AS (
  SELECT
    metric_id,
    num_event AS event_name
  FROM metric_defs
  UNION DISTINCT
  SELECT
    metric_id,
    den_event AS event_name
  FROM metric_defs
  WHERE
    den_event IS NOT NULL
), final AS (
  SELECT
    m.metric_id,
    m.metric_key,
    r.event_name,
    r.event_name = m.num_event AS is_num,
    COALESCE(r.event_name = m.den_event, FALSE) AS is_den,
    m.window_seconds,
    CASE WHEN m.kind = 'proportion' THEN 'any' ELSE m.num_agg END AS y_agg,
    CASE WHEN m.kind = 'ratio' THEN m.den_agg END AS x_agg,
    CASE
      WHEN CAST(@lookback_days AS INT64) = 0 OR m.kind = 'ratio'
      THEN CAST(NULL AS STRING)
      WHEN m.kind = 'proportion'
      THEN 'any'
      ELSE m.num_agg
    END AS c_agg
  FROM metric_defs AS m
  INNER JOIN metric_reads AS r
    ON r.metric_id = m.metric_id
)
SELECT
  *
FROM final;

-- [4] metric_stats: rows come back to Python
-- parameters:
--   as_of = 2026-11-21T00:00:00+00:00
--   lookback_days = 14
--   start_at = 2026-11-01T00:00:00+00:00
--   value_limit = 1000000000000.0
WITH unit_values_unit_metric_events AS (
  SELECT DISTINCT
    u.unit_id,
    m.metric_id,
    u.first_exposed_at,
    e.occurred_at,
    CASE WHEN ABS(e.value) <= @value_limit THEN e.value END AS value,
    m.is_num,
    m.is_den
  FROM abflow_units AS u
  INNER JOIN `events` AS e
    ON e.unit_id = u.unit_id
    AND e.occurred_at <= @as_of
    AND e.occurred_at >= LEAST(
      TIMESTAMP_ADD(u.first_exposed_at, INTERVAL -(
        CAST(@lookback_days AS INT64)
      ) DAY),
      @start_at
    )
  INNER JOIN abflow_metric_events AS m
    ON m.event_name = e.event_name
    AND (
      m.window_seconds IS NULL
      OR e.occurred_at < TIMESTAMP_ADD(u.first_exposed_at, INTERVAL m.window_seconds SECOND)
    )
), unit_values_phased_events AS (
  SELECT
    unit_id,
    metric_id,
    value,
    is_num AND occurred_at >= first_exposed_at AS num_post,
    is_den AND occurred_at >= first_exposed_at AS den_post,
    is_num
    AND occurred_at < first_exposed_at
    AND occurred_at >= TIMESTAMP_ADD(first_exposed_at, INTERVAL -(
      CAST(@lookback_days AS INT64)
    ) DAY) AS num_pre,
    is_num AND occurred_at < first_exposed_at AND occurred_at >= @start_at AS num_early
  FROM unit_values_unit_metric_events AS unit_metric_events
), unit_values_unit_metric_aggregates AS (
  SELECT
    unit_id,
    metric_id,
    COUNTIF(num_post) AS num_count,
    SUM(IF(num_post, value, NULL)) AS num_sum,
    AVG(IF(num_post, value, NULL)) AS num_mean,
    MAX(IF(num_post, value, NULL)) AS num_max,
    COUNTIF(den_post) AS den_count,
    SUM(IF(den_post, value, NULL)) AS den_sum,
    AVG(IF(den_post, value, NULL)) AS den_mean,
    MAX(IF(den_post, value, NULL)) AS den_max,
    COUNTIF(num_pre) AS pre_count,
    SUM(IF(num_pre, value, NULL)) AS pre_sum,
    AVG(IF(num_pre, value, NULL)) AS pre_mean,
    MAX(IF(num_pre, value, NULL)) AS pre_max,
    COUNTIF(num_early) AS early_count
  FROM unit_values_phased_events AS phased_events
  GROUP BY
    unit_id,
    metric_id
), unit_values_metric_aggs AS (
  SELECT DISTINCT
    metric_id,
    y_agg,
    x_agg,
    c_agg
  FROM abflow_metric_events
), unit_values_unit_metric_values AS (
  SELECT
    a.unit_id,
    a.metric_id,
    CASE m.y_agg
      WHEN 'any'
      THEN CASE WHEN a.num_count > 0 THEN 1.0 ELSE 0.0 END
      WHEN 'sum'
      THEN COALESCE(a.num_sum, 0.0)
      WHEN 'count'
      THEN CAST(a.num_count AS FLOAT64)
      WHEN 'mean'
      THEN a.num_mean
      WHEN 'max'
      THEN a.num_max
    END AS y,
    CASE m.x_agg
      WHEN 'sum'
      THEN COALESCE(a.den_sum, 0.0)
      WHEN 'count'
      THEN CAST(a.den_count AS FLOAT64)
      WHEN 'mean'
      THEN a.den_mean
      WHEN 'max'
      THEN a.den_max
    END AS x,
    CASE m.c_agg
      WHEN 'any'
      THEN CASE WHEN a.pre_count > 0 THEN 1.0 ELSE 0.0 END
      WHEN 'sum'
      THEN COALESCE(a.pre_sum, 0.0)
      WHEN 'count'
      THEN CAST(a.pre_count AS FLOAT64)
      WHEN 'mean'
      THEN COALESCE(a.pre_mean, 0.0)
      WHEN 'max'
      THEN COALESCE(a.pre_max, 0.0)
    END AS c,
    a.early_count > 0 AS contaminated
  FROM unit_values_unit_metric_aggregates AS a
  INNER JOIN unit_values_metric_aggs AS m
    ON m.metric_id = a.metric_id
), unit_values AS (
  SELECT
    *
  FROM unit_values_unit_metric_values AS unit_metric_values
), value_sums AS (
  SELECT
    uv.metric_id,
    us.variant_key,
    us.segment,
    COUNT(uv.y) AS units,
    SUM(uv.y) AS sum,
    SUM(uv.y * uv.y) AS sum_squares,
    SUM(uv.x) AS denominator_sum,
    SUM(uv.x * uv.x) AS denominator_sum_squares,
    SUM(uv.x * uv.y) AS sum_products,
    SUM(IF(uv.y IS NOT NULL, uv.c, NULL)) AS covariate_sum,
    SUM(IF(uv.y IS NOT NULL, uv.c * uv.c, NULL)) AS covariate_sum_squares,
    SUM(uv.c * uv.y) AS covariate_sum_products,
    COUNTIF(uv.contaminated) AS contaminated_units
  FROM unit_values AS uv
  INNER JOIN abflow_unit_segments AS us
    ON us.unit_id = uv.unit_id
  GROUP BY
    uv.metric_id,
    us.variant_key,
    us.segment
), exposed AS (
  SELECT
    variant_key,
    segment,
    COUNT(*) AS exposed_units
  FROM abflow_unit_segments
  GROUP BY
    variant_key,
    segment
), metric_nulls AS (
  SELECT DISTINCT
    metric_id,
    metric_key,
    y_agg IN ('any', 'sum', 'count') AS y_zero,
    COALESCE(x_agg IN ('sum', 'count'), FALSE) AS x_zero,
    c_agg IS NOT NULL AS c_zero
  FROM abflow_metric_events
), final AS (
  SELECT
    m.metric_key,
    ex.variant_key,
    ex.segment,
    ex.exposed_units,
    CASE WHEN m.y_zero THEN ex.exposed_units ELSE COALESCE(vs.units, 0) END AS units,
    COALESCE(vs.sum, 0.0) AS sum,
    COALESCE(vs.sum_squares, 0.0) AS sum_squares,
    COALESCE(vs.denominator_sum, CASE WHEN m.x_zero THEN 0.0 END) AS denominator_sum,
    COALESCE(vs.denominator_sum_squares, CASE WHEN m.x_zero THEN 0.0 END) AS denominator_sum_squares,
    COALESCE(vs.sum_products, CASE WHEN m.x_zero AND m.y_zero THEN 0.0 END) AS sum_products,
    COALESCE(vs.covariate_sum, CASE WHEN m.c_zero AND m.y_zero THEN 0.0 END) AS covariate_sum,
    COALESCE(vs.covariate_sum_squares, CASE WHEN m.c_zero AND m.y_zero THEN 0.0 END) AS covariate_sum_squares,
    COALESCE(vs.covariate_sum_products, CASE WHEN m.c_zero AND m.y_zero THEN 0.0 END) AS covariate_sum_products,
    COALESCE(vs.contaminated_units, 0) AS contaminated_units
  FROM exposed AS ex
  CROSS JOIN metric_nulls AS m
  LEFT JOIN value_sums AS vs
    ON vs.metric_id = m.metric_id
    AND vs.variant_key = ex.variant_key
    AND vs.segment = ex.segment
)
SELECT
  *
FROM final
ORDER BY
  metric_key NULLS LAST,
  variant_key NULLS LAST,
  segment NULLS LAST;

-- [5] exposure_summary: rows come back to Python
-- parameters:
--   as_of = 2026-11-21T00:00:00+00:00
--   experiment_key = 'checkout_button'
--   start_at = 2026-11-01T00:00:00+00:00
--   variants_1 = 'control'
--   variants_2 = 'green'
WITH raw_exposures AS (
  SELECT
    unit_id,
    COALESCE(variant_key, '(null)') AS variant_key,
    assigned_at
  FROM `assignments`
  WHERE
    experiment_key = @experiment_key
    AND unit_id IS NOT NULL
    AND assigned_at >= @start_at
    AND assigned_at <= @as_of
), per_unit AS (
  SELECT
    unit_id,
    MIN(assigned_at) AS first_exposed_at,
    MIN(variant_key) AS variant_key,
    MIN(variant_key) <> MAX(variant_key) AS multiple
  FROM raw_exposures
  GROUP BY
    unit_id
), labelled AS (
  SELECT
    unit_id,
    first_exposed_at,
    multiple,
    CASE WHEN multiple THEN '(multiple)' ELSE variant_key END AS variant_key,
    NOT multiple AND NOT variant_key IN (@variants_1, @variants_2) AS unknown
  FROM per_unit
), ranked AS (
  SELECT
    *,
    ROW_NUMBER() OVER (PARTITION BY variant_key, multiple, unknown ORDER BY unit_id NULLS LAST) AS unit_rank
  FROM labelled
), final AS (
  SELECT
    variant_key,
    multiple,
    unknown,
    COUNT(*) AS units,
    MIN(first_exposed_at) AS first_exposed_at,
    MAX(first_exposed_at) AS last_exposed_at,
    MAX(CASE WHEN unit_rank = 1 THEN unit_id END) AS sample_1,
    MAX(CASE WHEN unit_rank = 2 THEN unit_id END) AS sample_2,
    MAX(CASE WHEN unit_rank = 3 THEN unit_id END) AS sample_3,
    MAX(CASE WHEN unit_rank = 4 THEN unit_id END) AS sample_4,
    MAX(CASE WHEN unit_rank = 5 THEN unit_id END) AS sample_5
  FROM ranked
  GROUP BY
    variant_key,
    multiple,
    unknown
)
SELECT
  *
FROM final
ORDER BY
  variant_key NULLS LAST;


-- == 2. data-quality checks ==
-- The suites of expectations/*.json as SQL (Great Expectations has no datasource here).

-- [6] check_assignments: rows come back to Python
-- parameters:
--   as_of = 2026-11-21T00:00:00+00:00
--   e5_set_0 = 'control'
--   e5_set_1 = 'green'
--   e6_max = 2026-11-21T00:00:00+00:00
--   e6_min = 2026-11-01T00:00:00+00:00
--   e7_max = '(the wall-clock time of the run)'
--   experiment_key = 'checkout_button'
--   now = '(the wall-clock time of the run)'
WITH asset AS (
  SELECT
    experiment_key,
    unit_id,
    variant_key,
    assigned_at
  FROM `assignments`
  WHERE
    experiment_key = @experiment_key
    AND (
      assigned_at <= @as_of OR assigned_at > @now OR assigned_at IS NULL
    )
)
SELECT
  COUNT(*) AS e0_n,
  COUNT(*) AS e1_n,
  0 AS e1_missing,
  COUNTIF(experiment_key IS NULL) AS e1_bad,
  COUNT(*) AS e2_n,
  0 AS e2_missing,
  COUNTIF(unit_id IS NULL) AS e2_bad,
  COUNT(*) AS e3_n,
  0 AS e3_missing,
  COUNTIF(variant_key IS NULL) AS e3_bad,
  COUNT(*) AS e4_n,
  0 AS e4_missing,
  COUNTIF(assigned_at IS NULL) AS e4_bad,
  COUNT(*) AS e5_n,
  COUNTIF(variant_key IS NULL) AS e5_missing,
  COUNTIF(NOT variant_key IS NULL AND (
    NOT variant_key IN (@e5_set_0, @e5_set_1)
  )) AS e5_bad,
  COUNT(*) AS e6_n,
  COUNTIF(assigned_at IS NULL) AS e6_missing,
  COUNTIF(NOT assigned_at IS NULL AND (
    assigned_at < @e6_min OR assigned_at > @e6_max
  )) AS e6_bad,
  COUNT(*) AS e7_n,
  COUNTIF(assigned_at IS NULL) AS e7_missing,
  COUNTIF(NOT assigned_at IS NULL AND (
    assigned_at > @e7_max
  )) AS e7_bad
FROM asset;

-- [7] check_events: rows come back to Python
-- parameters:
--   e3_max = '(the wall-clock time of the run)'
--   e4_cond_0 = 'page_load'
--   e4_cond_1 = 'purchase'
--   e5_cond_0 = 'page_load'
--   e5_cond_1 = 'purchase'
--   event_names_1 = 'click'
--   event_names_2 = 'impression'
--   event_names_3 = 'page_load'
--   event_names_4 = 'purchase'
--   events_from = 2026-10-18T00:00:00+00:00
--   experiment_key = 'checkout_button'
--   now = '(the wall-clock time of the run)'
--   value_limit = 1000000000000.0
--   window_end = 2026-11-21T00:00:00+00:00
WITH asset AS (
  SELECT
    e.unit_id,
    e.event_name,
    e.occurred_at,
    e.value,
    CASE
      WHEN ROW_NUMBER() OVER (
        PARTITION BY e.unit_id, e.event_name, e.occurred_at, e.value
        ORDER BY e.occurred_at NULLS LAST
      ) > 1
      THEN e.unit_id
    END AS duplicate_of,
    CASE
      WHEN e.value IS NOT NULL AND NOT ABS(e.value) <= @value_limit
      THEN e.unit_id
    END AS out_of_range
  FROM `events` AS e
  WHERE
    e.unit_id IN (
      SELECT
        a.unit_id
      FROM `assignments` AS a
      WHERE
        a.experiment_key = @experiment_key AND a.assigned_at <= @window_end
    )
    AND (
      e.event_name IN (@event_names_1, @event_names_2, @event_names_3, @event_names_4)
      OR e.event_name IS NULL
    )
    AND (
      (
        e.occurred_at >= @events_from AND e.occurred_at <= @window_end
      )
      OR e.occurred_at > @now
      OR e.occurred_at IS NULL
    )
)
SELECT
  COUNT(*) AS e0_n,
  0 AS e0_missing,
  COUNTIF(unit_id IS NULL) AS e0_bad,
  COUNT(*) AS e1_n,
  0 AS e1_missing,
  COUNTIF(event_name IS NULL) AS e1_bad,
  COUNT(*) AS e2_n,
  0 AS e2_missing,
  COUNTIF(occurred_at IS NULL) AS e2_bad,
  COUNT(*) AS e3_n,
  COUNTIF(occurred_at IS NULL) AS e3_missing,
  COUNTIF(NOT occurred_at IS NULL AND (
    occurred_at > @e3_max
  )) AS e3_bad,
  COUNTIF(event_name IN (@e4_cond_0, @e4_cond_1)) AS e4_n,
  0 AS e4_missing,
  COUNTIF(event_name IN (@e4_cond_0, @e4_cond_1) AND value IS NULL) AS e4_bad,
  COUNTIF(event_name IN (@e5_cond_0, @e5_cond_1)) AS e5_n,
  0 AS e5_missing,
  COUNTIF(event_name IN (@e5_cond_0, @e5_cond_1) AND NOT out_of_range IS NULL) AS e5_bad,
  COUNT(*) AS e6_n,
  0 AS e6_missing,
  COUNTIF(NOT duplicate_of IS NULL) AS e6_bad
FROM asset;

-- [8] check_variant_stats: rows come back to Python
-- parameters:
--   e0_want_0 = 'control'
--   e0_want_1 = 'green'
--   experiment_key = 'checkout_button'
--   start_at = 2026-11-01T00:00:00+00:00
--   variants_1 = 'control'
--   variants_2 = 'green'
--   window_end = 2026-11-21T00:00:00+00:00
WITH asset AS (
  SELECT
    variant_key,
    COUNT(*) AS units
  FROM (
    SELECT
      unit_id,
      MIN(COALESCE(variant_key, '(null)')) AS variant_key,
      COUNT(DISTINCT COALESCE(variant_key, '(null)')) AS variant_count
    FROM `assignments`
    WHERE
      experiment_key = @experiment_key
      AND unit_id IS NOT NULL
      AND assigned_at >= @start_at
      AND assigned_at <= @window_end
    GROUP BY
      unit_id
  ) AS per_unit
  WHERE
    variant_count = 1 AND variant_key IN (@variants_1, @variants_2)
  GROUP BY
    variant_key
)
SELECT
  COUNTIF(variant_key = @e0_want_0) AS e0_has_0,
  COUNTIF(variant_key = @e0_want_1) AS e0_has_1
FROM asset;
