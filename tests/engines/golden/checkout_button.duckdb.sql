-- abflow sql: experiment checkout_button, dialect duckdb, as of 2026-11-21T00:00:00+00:00
-- sources: assignments = assignments, events = events
-- Placeholders are bound values (listed above each statement), never SQL text.
-- Rendered from sql/queries/*.sql (canonical) by sqlglot 30.30.0; executed on this engine.

-- == 1. sufficient statistics and exposure summary ==

-- [1] units: materialised as temporary table abflow_units
-- parameters:
--   as_of = 2026-11-21T00:00:00+00:00
--   experiment_key = 'checkout_button'
--   start_at = 2026-11-01T00:00:00+00:00
--   variants_1 = 'control'
--   variants_2 = 'green'
CREATE OR REPLACE TEMPORARY TABLE abflow_units AS
WITH raw_exposures AS (
  SELECT
    unit_id,
    COALESCE(variant_key, '(null)') AS variant_key,
    assigned_at
  FROM "assignments"
  WHERE
    experiment_key = $experiment_key
    AND unit_id IS NOT NULL
    AND assigned_at >= $start_at
    AND assigned_at <= $as_of
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
    single_variant AND variant_key IN ($variants_1, $variants_2)
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
CREATE OR REPLACE TEMPORARY TABLE abflow_unit_segments AS
WITH bandit_periods AS (
  SELECT
    CAST($bandit_periods_1_period_label AS TEXT) AS period_label,
    CAST($bandit_periods_1_period_start AS TIMESTAMPTZ) AS period_start,
    CAST($bandit_periods_1_period_end AS TIMESTAMPTZ) AS period_end
  WHERE
    FALSE
), unit_levels AS (
  SELECT
    u.unit_id,
    u.variant_key,
    'country' AS dimension,
    MIN(COALESCE(a.attributes ->> '$.country', '(missing)')) AS level
  FROM abflow_units AS u
  INNER JOIN "assignments" AS a
    ON a.experiment_key = $experiment_key
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
    ROW_NUMBER() OVER (PARTITION BY dimension ORDER BY COUNT(*) DESC NULLS FIRST, level) AS level_rank
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
--   metric_defs_1_den_cap_ignore_zeros = NULL
--   metric_defs_1_den_cap_lower = NULL
--   metric_defs_1_den_cap_type = NULL
--   metric_defs_1_den_cap_upper = NULL
--   metric_defs_1_den_event = NULL
--   metric_defs_1_kind = 'proportion'
--   metric_defs_1_metric_id = 1
--   metric_defs_1_metric_key = 'purchase_rate'
--   metric_defs_1_num_agg = 'any'
--   metric_defs_1_num_cap_ignore_zeros = NULL
--   metric_defs_1_num_cap_lower = NULL
--   metric_defs_1_num_cap_type = NULL
--   metric_defs_1_num_cap_upper = NULL
--   metric_defs_1_num_event = 'purchase'
--   metric_defs_1_window_seconds = 604800
--   metric_defs_2_den_agg = NULL
--   metric_defs_2_den_cap_ignore_zeros = NULL
--   metric_defs_2_den_cap_lower = NULL
--   metric_defs_2_den_cap_type = NULL
--   metric_defs_2_den_cap_upper = NULL
--   metric_defs_2_den_event = NULL
--   metric_defs_2_kind = 'mean'
--   metric_defs_2_metric_id = 2
--   metric_defs_2_metric_key = 'revenue'
--   metric_defs_2_num_agg = 'sum'
--   metric_defs_2_num_cap_ignore_zeros = False
--   metric_defs_2_num_cap_lower = NULL
--   metric_defs_2_num_cap_type = 'percentile'
--   metric_defs_2_num_cap_upper = 0.99
--   metric_defs_2_num_event = 'purchase'
--   metric_defs_2_window_seconds = NULL
--   metric_defs_3_den_agg = NULL
--   metric_defs_3_den_cap_ignore_zeros = NULL
--   metric_defs_3_den_cap_lower = NULL
--   metric_defs_3_den_cap_type = NULL
--   metric_defs_3_den_cap_upper = NULL
--   metric_defs_3_den_event = NULL
--   metric_defs_3_kind = 'mean'
--   metric_defs_3_metric_id = 3
--   metric_defs_3_metric_key = 'app_revenue'
--   metric_defs_3_num_agg = 'sum'
--   metric_defs_3_num_cap_ignore_zeros = NULL
--   metric_defs_3_num_cap_lower = NULL
--   metric_defs_3_num_cap_type = NULL
--   metric_defs_3_num_cap_upper = NULL
--   metric_defs_3_num_event = 'purchase'
--   metric_defs_3_window_seconds = NULL
--   metric_defs_4_den_agg = 'count'
--   metric_defs_4_den_cap_ignore_zeros = NULL
--   metric_defs_4_den_cap_lower = NULL
--   metric_defs_4_den_cap_type = NULL
--   metric_defs_4_den_cap_upper = NULL
--   metric_defs_4_den_event = 'impression'
--   metric_defs_4_kind = 'ratio'
--   metric_defs_4_metric_id = 4
--   metric_defs_4_metric_key = 'ctr'
--   metric_defs_4_num_agg = 'count'
--   metric_defs_4_num_cap_ignore_zeros = NULL
--   metric_defs_4_num_cap_lower = NULL
--   metric_defs_4_num_cap_type = NULL
--   metric_defs_4_num_cap_upper = NULL
--   metric_defs_4_num_event = 'click'
--   metric_defs_4_window_seconds = NULL
--   metric_defs_5_den_agg = NULL
--   metric_defs_5_den_cap_ignore_zeros = NULL
--   metric_defs_5_den_cap_lower = NULL
--   metric_defs_5_den_cap_type = NULL
--   metric_defs_5_den_cap_upper = NULL
--   metric_defs_5_den_event = NULL
--   metric_defs_5_kind = 'mean'
--   metric_defs_5_metric_id = 5
--   metric_defs_5_metric_key = 'latency_ms'
--   metric_defs_5_num_agg = 'mean'
--   metric_defs_5_num_cap_ignore_zeros = NULL
--   metric_defs_5_num_cap_lower = NULL
--   metric_defs_5_num_cap_type = NULL
--   metric_defs_5_num_cap_upper = NULL
--   metric_defs_5_num_event = 'page_load'
--   metric_defs_5_window_seconds = NULL
--   metric_defs_6_den_agg = NULL
--   metric_defs_6_den_cap_ignore_zeros = NULL
--   metric_defs_6_den_cap_lower = NULL
--   metric_defs_6_den_cap_type = NULL
--   metric_defs_6_den_cap_upper = NULL
--   metric_defs_6_den_event = NULL
--   metric_defs_6_kind = 'quantile'
--   metric_defs_6_metric_id = 6
--   metric_defs_6_metric_key = 'latency_p90_ms'
--   metric_defs_6_num_agg = 'mean'
--   metric_defs_6_num_cap_ignore_zeros = NULL
--   metric_defs_6_num_cap_lower = NULL
--   metric_defs_6_num_cap_type = NULL
--   metric_defs_6_num_cap_upper = NULL
--   metric_defs_6_num_event = 'page_load'
--   metric_defs_6_window_seconds = NULL
--   metric_defs_7_den_agg = NULL
--   metric_defs_7_den_cap_ignore_zeros = NULL
--   metric_defs_7_den_cap_lower = NULL
--   metric_defs_7_den_cap_type = NULL
--   metric_defs_7_den_cap_upper = NULL
--   metric_defs_7_den_event = NULL
--   metric_defs_7_kind = 'mean'
--   metric_defs_7_metric_id = 7
--   metric_defs_7_metric_key = 'sessions'
--   metric_defs_7_num_agg = 'count'
--   metric_defs_7_num_cap_ignore_zeros = NULL
--   metric_defs_7_num_cap_lower = NULL
--   metric_defs_7_num_cap_type = NULL
--   metric_defs_7_num_cap_upper = NULL
--   metric_defs_7_num_event = 'session_start'
--   metric_defs_7_window_seconds = NULL
CREATE OR REPLACE TEMPORARY TABLE abflow_metric_events AS
WITH metric_defs AS (
  SELECT
    CAST($metric_defs_1_metric_id AS INT) AS metric_id,
    CAST($metric_defs_1_metric_key AS TEXT) AS metric_key,
    CAST($metric_defs_1_kind AS TEXT) AS kind,
    CAST($metric_defs_1_num_event AS TEXT) AS num_event,
    CAST($metric_defs_1_num_agg AS TEXT) AS num_agg,
    CAST($metric_defs_1_den_event AS TEXT) AS den_event,
    CAST($metric_defs_1_den_agg AS TEXT) AS den_agg,
    CAST($metric_defs_1_window_seconds AS BIGINT) AS window_seconds,
    CAST($metric_defs_1_num_cap_type AS TEXT) AS num_cap_type,
    CAST($metric_defs_1_num_cap_lower AS DOUBLE) AS num_cap_lower,
    CAST($metric_defs_1_num_cap_upper AS DOUBLE) AS num_cap_upper,
    CAST($metric_defs_1_num_cap_ignore_zeros AS BOOLEAN) AS num_cap_ignore_zeros,
    CAST($metric_defs_1_den_cap_type AS TEXT) AS den_cap_type,
    CAST($metric_defs_1_den_cap_lower AS DOUBLE) AS den_cap_lower,
    CAST($metric_defs_1_den_cap_upper AS DOUBLE) AS den_cap_upper,
    CAST($metric_defs_1_den_cap_ignore_zeros AS BOOLEAN) AS den_cap_ignore_zeros
  UNION ALL
  SELECT
    CAST($metric_defs_2_metric_id AS INT) AS metric_id,
    CAST($metric_defs_2_metric_key AS TEXT) AS metric_key,
    CAST($metric_defs_2_kind AS TEXT) AS kind,
    CAST($metric_defs_2_num_event AS TEXT) AS num_event,
    CAST($metric_defs_2_num_agg AS TEXT) AS num_agg,
    CAST($metric_defs_2_den_event AS TEXT) AS den_event,
    CAST($metric_defs_2_den_agg AS TEXT) AS den_agg,
    CAST($metric_defs_2_window_seconds AS BIGINT) AS window_seconds,
    CAST($metric_defs_2_num_cap_type AS TEXT) AS num_cap_type,
    CAST($metric_defs_2_num_cap_lower AS DOUBLE) AS num_cap_lower,
    CAST($metric_defs_2_num_cap_upper AS DOUBLE) AS num_cap_upper,
    CAST($metric_defs_2_num_cap_ignore_zeros AS BOOLEAN) AS num_cap_ignore_zeros,
    CAST($metric_defs_2_den_cap_type AS TEXT) AS den_cap_type,
    CAST($metric_defs_2_den_cap_lower AS DOUBLE) AS den_cap_lower,
    CAST($metric_defs_2_den_cap_upper AS DOUBLE) AS den_cap_upper,
    CAST($metric_defs_2_den_cap_ignore_zeros AS BOOLEAN) AS den_cap_ignore_zeros
  UNION ALL
  SELECT
    CAST($metric_defs_3_metric_id AS INT) AS metric_id,
    CAST($metric_defs_3_metric_key AS TEXT) AS metric_key,
    CAST($metric_defs_3_kind AS TEXT) AS kind,
    CAST($metric_defs_3_num_event AS TEXT) AS num_event,
    CAST($metric_defs_3_num_agg AS TEXT) AS num_agg,
    CAST($metric_defs_3_den_event AS TEXT) AS den_event,
    CAST($metric_defs_3_den_agg AS TEXT) AS den_agg,
    CAST($metric_defs_3_window_seconds AS BIGINT) AS window_seconds,
    CAST($metric_defs_3_num_cap_type AS TEXT) AS num_cap_type,
    CAST($metric_defs_3_num_cap_lower AS DOUBLE) AS num_cap_lower,
    CAST($metric_defs_3_num_cap_upper AS DOUBLE) AS num_cap_upper,
    CAST($metric_defs_3_num_cap_ignore_zeros AS BOOLEAN) AS num_cap_ignore_zeros,
    CAST($metric_defs_3_den_cap_type AS TEXT) AS den_cap_type,
    CAST($metric_defs_3_den_cap_lower AS DOUBLE) AS den_cap_lower,
    CAST($metric_defs_3_den_cap_upper AS DOUBLE) AS den_cap_upper,
    CAST($metric_defs_3_den_cap_ignore_zeros AS BOOLEAN) AS den_cap_ignore_zeros
  UNION ALL
  SELECT
    CAST($metric_defs_4_metric_id AS INT) AS metric_id,
    CAST($metric_defs_4_metric_key AS TEXT) AS metric_key,
    CAST($metric_defs_4_kind AS TEXT) AS kind,
    CAST($metric_defs_4_num_event AS TEXT) AS num_event,
    CAST($metric_defs_4_num_agg AS TEXT) AS num_agg,
    CAST($metric_defs_4_den_event AS TEXT) AS den_event,
    CAST($metric_defs_4_den_agg AS TEXT) AS den_agg,
    CAST($metric_defs_4_window_seconds AS BIGINT) AS window_seconds,
    CAST($metric_defs_4_num_cap_type AS TEXT) AS num_cap_type,
    CAST($metric_defs_4_num_cap_lower AS DOUBLE) AS num_cap_lower,
    CAST($metric_defs_4_num_cap_upper AS DOUBLE) AS num_cap_upper,
    CAST($metric_defs_4_num_cap_ignore_zeros AS BOOLEAN) AS num_cap_ignore_zeros,
    CAST($metric_defs_4_den_cap_type AS TEXT) AS den_cap_type,
    CAST($metric_defs_4_den_cap_lower AS DOUBLE) AS den_cap_lower,
    CAST($metric_defs_4_den_cap_upper AS DOUBLE) AS den_cap_upper,
    CAST($metric_defs_4_den_cap_ignore_zeros AS BOOLEAN) AS den_cap_ignore_zeros
  UNION ALL
  SELECT
    CAST($metric_defs_5_metric_id AS INT) AS metric_id,
    CAST($metric_defs_5_metric_key AS TEXT) AS metric_key,
    CAST($metric_defs_5_kind AS TEXT) AS kind,
    CAST($metric_defs_5_num_event AS TEXT) AS num_event,
    CAST($metric_defs_5_num_agg AS TEXT) AS num_agg,
    CAST($metric_defs_5_den_event AS TEXT) AS den_event,
    CAST($metric_defs_5_den_agg AS TEXT) AS den_agg,
    CAST($metric_defs_5_window_seconds AS BIGINT) AS window_seconds,
    CAST($metric_defs_5_num_cap_type AS TEXT) AS num_cap_type,
    CAST($metric_defs_5_num_cap_lower AS DOUBLE) AS num_cap_lower,
    CAST($metric_defs_5_num_cap_upper AS DOUBLE) AS num_cap_upper,
    CAST($metric_defs_5_num_cap_ignore_zeros AS BOOLEAN) AS num_cap_ignore_zeros,
    CAST($metric_defs_5_den_cap_type AS TEXT) AS den_cap_type,
    CAST($metric_defs_5_den_cap_lower AS DOUBLE) AS den_cap_lower,
    CAST($metric_defs_5_den_cap_upper AS DOUBLE) AS den_cap_upper,
    CAST($metric_defs_5_den_cap_ignore_zeros AS BOOLEAN) AS den_cap_ignore_zeros
  UNION ALL
  SELECT
    CAST($metric_defs_6_metric_id AS INT) AS metric_id,
    CAST($metric_defs_6_metric_key AS TEXT) AS metric_key,
    CAST($metric_defs_6_kind AS TEXT) AS kind,
    CAST($metric_defs_6_num_event AS TEXT) AS num_event,
    CAST($metric_defs_6_num_agg AS TEXT) AS num_agg,
    CAST($metric_defs_6_den_event AS TEXT) AS den_event,
    CAST($metric_defs_6_den_agg AS TEXT) AS den_agg,
    CAST($metric_defs_6_window_seconds AS BIGINT) AS window_seconds,
    CAST($metric_defs_6_num_cap_type AS TEXT) AS num_cap_type,
    CAST($metric_defs_6_num_cap_lower AS DOUBLE) AS num_cap_lower,
    CAST($metric_defs_6_num_cap_upper AS DOUBLE) AS num_cap_upper,
    CAST($metric_defs_6_num_cap_ignore_zeros AS BOOLEAN) AS num_cap_ignore_zeros,
    CAST($metric_defs_6_den_cap_type AS TEXT) AS den_cap_type,
    CAST($metric_defs_6_den_cap_lower AS DOUBLE) AS den_cap_lower,
    CAST($metric_defs_6_den_cap_upper AS DOUBLE) AS den_cap_upper,
    CAST($metric_defs_6_den_cap_ignore_zeros AS BOOLEAN) AS den_cap_ignore_zeros
  UNION ALL
  SELECT
    CAST($metric_defs_7_metric_id AS INT) AS metric_id,
    CAST($metric_defs_7_metric_key AS TEXT) AS metric_key,
    CAST($metric_defs_7_kind AS TEXT) AS kind,
    CAST($metric_defs_7_num_event AS TEXT) AS num_event,
    CAST($metric_defs_7_num_agg AS TEXT) AS num_agg,
    CAST($metric_defs_7_den_event AS TEXT) AS den_event,
    CAST($metric_defs_7_den_agg AS TEXT) AS den_agg,
    CAST($metric_defs_7_window_seconds AS BIGINT) AS window_seconds,
    CAST($metric_defs_7_num_cap_type AS TEXT) AS num_cap_type,
    CAST($metric_defs_7_num_cap_lower AS DOUBLE) AS num_cap_lower,
    CAST($metric_defs_7_num_cap_upper AS DOUBLE) AS num_cap_upper,
    CAST($metric_defs_7_num_cap_ignore_zeros AS BOOLEAN) AS num_cap_ignore_zeros,
    CAST($metric_defs_7_den_cap_type AS TEXT) AS den_cap_type,
    CAST($metric_defs_7_den_cap_lower AS DOUBLE) AS den_cap_lower,
    CAST($metric_defs_7_den_cap_upper AS DOUBLE) AS den_cap_upper,
    CAST($metric_defs_7_den_cap_ignore_zeros AS BOOLEAN) AS den_cap_ignore_zeros
), metric_reads AS (
  SELECT
    metric_id,
    num_event AS event_name
  FROM metric_defs
  UNION
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
      WHEN CAST($lookback_days AS INT) = 0
      THEN CAST(NULL AS TEXT)
      WHEN m.kind = 'quantile'
      THEN CAST(NULL AS TEXT)
      WHEN m.kind = 'proportion'
      THEN 'any'
      ELSE m.num_agg
    END AS c_agg,
    CASE WHEN CAST($lookback_days AS INT) > 0 AND m.kind = 'ratio' THEN m.den_agg END AS d_agg,
    m.num_cap_type,
    m.num_cap_lower,
    m.num_cap_upper,
    m.num_cap_ignore_zeros,
    m.den_cap_type,
    m.den_cap_lower,
    m.den_cap_upper,
    m.den_cap_ignore_zeros
  FROM metric_defs AS m
  INNER JOIN metric_reads AS r
    ON r.metric_id = m.metric_id
)
SELECT
  *
FROM final;

-- [4] unit_values: materialised as temporary table abflow_unit_values
-- parameters:
--   as_of = 2026-11-21T00:00:00+00:00
--   cohort_1_day = 7
--   cohort_2_day = 14
--   cohort_3_day = 21
--   exposure_age = 1
--   filter_3_den_1_1 = 'ios'
--   filter_3_den_1_2 = 'android'
--   filter_3_den_2_1 = 10.0
--   filter_3_num_1_1 = 'ios'
--   filter_3_num_1_2 = 'android'
--   filter_3_num_2_1 = 10.0
--   lookback_days = 14
--   start_at = 2026-11-01T00:00:00+00:00
--   value_limit = 1000000000000.0
CREATE OR REPLACE TEMPORARY TABLE abflow_unit_values AS
WITH unit_metric_events AS (
  SELECT DISTINCT
    u.unit_id AS unit_id,
    m.metric_id,
    u.first_exposed_at,
    e.occurred_at,
    CASE WHEN ABS(e.value) <= $value_limit THEN e.value END AS value,
    m.is_num
    AND CASE m.metric_id
      WHEN 3
      THEN (
        e.properties ->> '$.platform'
      ) IN ($filter_3_num_1_1, $filter_3_num_1_2)
      AND CASE
        WHEN REGEXP_MATCHES((
          e.properties ->> '$.amount'
        ), '^-?[0-9]+([.][0-9]+)?([eE][-+]?[0-9]+)?$')
        THEN CAST(e.properties ->> '$.amount' AS DOUBLE)
      END >= $filter_3_num_2_1
      ELSE TRUE
    END AS is_num,
    m.is_den
    AND CASE m.metric_id
      WHEN 3
      THEN (
        e.properties ->> '$.platform'
      ) IN ($filter_3_den_1_1, $filter_3_den_1_2)
      AND CASE
        WHEN REGEXP_MATCHES((
          e.properties ->> '$.amount'
        ), '^-?[0-9]+([.][0-9]+)?([eE][-+]?[0-9]+)?$')
        THEN CAST(e.properties ->> '$.amount' AS DOUBLE)
      END >= $filter_3_den_2_1
      ELSE TRUE
    END AS is_den,
    e.occurred_at >= u.first_exposed_at AS post,
    e.occurred_at < u.first_exposed_at
    AND e.occurred_at >= (
      u.first_exposed_at + INTERVAL (-(
        CAST($lookback_days AS INT)
      )) DAY
    ) AS in_lookback,
    e.occurred_at < u.first_exposed_at AND e.occurred_at >= $start_at AS early,
    CASE
      WHEN CAST($exposure_age AS INT) = 0
      THEN -1
      WHEN e.occurred_at < LEAST(u.first_exposed_at, $start_at)
      THEN -1
      WHEN e.occurred_at < u.first_exposed_at
      THEN 4
      WHEN e.occurred_at < (
        u.first_exposed_at + INTERVAL (CAST($cohort_1_day AS INT)) DAY
      )
      THEN 0
      WHEN e.occurred_at < (
        u.first_exposed_at + INTERVAL (CAST($cohort_2_day AS INT)) DAY
      )
      THEN 1
      WHEN e.occurred_at < (
        u.first_exposed_at + INTERVAL (CAST($cohort_3_day AS INT)) DAY
      )
      THEN 2
      ELSE 3
    END AS exposure_cohort,
    u.variant_key AS variant_key
  FROM abflow_units AS u
  INNER JOIN "events" AS e
    ON e.unit_id = u.unit_id
    AND e.occurred_at <= $as_of
    AND e.occurred_at >= LEAST(u.first_exposed_at + INTERVAL (-(
      CAST($lookback_days AS INT)
    )) DAY, $start_at)
  INNER JOIN abflow_metric_events AS m
    ON m.event_name = e.event_name
    AND (
      m.window_seconds IS NULL
      OR e.occurred_at < (
        u.first_exposed_at + INTERVAL (m.window_seconds) SECOND
      )
    )
  WHERE
    (
      m.is_num
      AND CASE m.metric_id
        WHEN 3
        THEN (
          e.properties ->> '$.platform'
        ) IN ($filter_3_num_1_1, $filter_3_num_1_2)
        AND CASE
          WHEN REGEXP_MATCHES((
            e.properties ->> '$.amount'
          ), '^-?[0-9]+([.][0-9]+)?([eE][-+]?[0-9]+)?$')
          THEN CAST(e.properties ->> '$.amount' AS DOUBLE)
        END >= $filter_3_num_2_1
        ELSE TRUE
      END
    )
    OR (
      m.is_den
      AND CASE m.metric_id
        WHEN 3
        THEN (
          e.properties ->> '$.platform'
        ) IN ($filter_3_den_1_1, $filter_3_den_1_2)
        AND CASE
          WHEN REGEXP_MATCHES((
            e.properties ->> '$.amount'
          ), '^-?[0-9]+([.][0-9]+)?([eE][-+]?[0-9]+)?$')
          THEN CAST(e.properties ->> '$.amount' AS DOUBLE)
        END >= $filter_3_den_2_1
        ELSE TRUE
      END
    )
), phased_events AS (
  SELECT
    unit_id,
    variant_key,
    metric_id,
    first_exposed_at,
    value,
    is_num AND post AS num_post,
    is_den AND post AS den_post,
    is_num AND in_lookback AS num_pre,
    is_den AND in_lookback AS den_pre,
    is_num AND early AS num_early,
    is_num,
    is_den,
    exposure_cohort
  FROM unit_metric_events
), unit_metric_aggregates AS (
  SELECT
    unit_id,
    metric_id,
    first_exposed_at,
    MIN(variant_key) AS variant_key,
    COUNT(*) FILTER(WHERE
      num_post) AS num_count,
    SUM(value) FILTER(WHERE
      num_post) AS num_sum,
    AVG(value) FILTER(WHERE
      num_post) AS num_mean,
    CAST(NULL AS DOUBLE) AS num_max,
    COUNT(*) FILTER(WHERE
      den_post) AS den_count,
    CAST(0 AS DOUBLE) AS den_sum,
    CAST(NULL AS DOUBLE) AS den_mean,
    CAST(NULL AS DOUBLE) AS den_max,
    COUNT(*) FILTER(WHERE
      num_pre) AS pre_count,
    SUM(value) FILTER(WHERE
      num_pre) AS pre_sum,
    AVG(value) FILTER(WHERE
      num_pre) AS pre_mean,
    CAST(NULL AS DOUBLE) AS pre_max,
    COUNT(*) FILTER(WHERE
      den_pre) AS den_pre_count,
    CAST(0 AS DOUBLE) AS den_pre_sum,
    CAST(NULL AS DOUBLE) AS den_pre_mean,
    CAST(NULL AS DOUBLE) AS den_pre_max,
    COUNT(*) FILTER(WHERE
      num_early) AS early_count,
    COUNT(*) FILTER(WHERE
      exposure_cohort IN (0, 4)) AS c0_rows,
    COUNT(*) FILTER(WHERE
      is_num AND exposure_cohort = 0) AS c0_num_count,
    COUNT(value) FILTER(WHERE
      is_num AND exposure_cohort = 0) AS c0_num_value_count,
    SUM(value) FILTER(WHERE
      is_num AND exposure_cohort = 0) AS c0_num_sum,
    CAST(NULL AS DOUBLE) AS c0_num_max,
    COUNT(*) FILTER(WHERE
      is_den AND exposure_cohort = 0) AS c0_den_count,
    CAST(0 AS BIGINT) AS c0_den_value_count,
    CAST(0 AS DOUBLE) AS c0_den_sum,
    CAST(NULL AS DOUBLE) AS c0_den_max,
    COUNT(*) FILTER(WHERE
      is_num AND exposure_cohort = 1) AS c1_num_count,
    COUNT(value) FILTER(WHERE
      is_num AND exposure_cohort = 1) AS c1_num_value_count,
    SUM(value) FILTER(WHERE
      is_num AND exposure_cohort = 1) AS c1_num_sum,
    CAST(NULL AS DOUBLE) AS c1_num_max,
    COUNT(*) FILTER(WHERE
      is_den AND exposure_cohort = 1) AS c1_den_count,
    CAST(0 AS BIGINT) AS c1_den_value_count,
    CAST(0 AS DOUBLE) AS c1_den_sum,
    CAST(NULL AS DOUBLE) AS c1_den_max,
    COUNT(*) FILTER(WHERE
      is_num AND exposure_cohort = 2) AS c2_num_count,
    COUNT(value) FILTER(WHERE
      is_num AND exposure_cohort = 2) AS c2_num_value_count,
    SUM(value) FILTER(WHERE
      is_num AND exposure_cohort = 2) AS c2_num_sum,
    CAST(NULL AS DOUBLE) AS c2_num_max,
    COUNT(*) FILTER(WHERE
      is_den AND exposure_cohort = 2) AS c2_den_count,
    CAST(0 AS BIGINT) AS c2_den_value_count,
    CAST(0 AS DOUBLE) AS c2_den_sum,
    CAST(NULL AS DOUBLE) AS c2_den_max,
    COUNT(*) FILTER(WHERE
      is_num AND exposure_cohort = 3) AS c3_num_count,
    COUNT(value) FILTER(WHERE
      is_num AND exposure_cohort = 3) AS c3_num_value_count,
    SUM(value) FILTER(WHERE
      is_num AND exposure_cohort = 3) AS c3_num_sum,
    CAST(NULL AS DOUBLE) AS c3_num_max,
    COUNT(*) FILTER(WHERE
      is_den AND exposure_cohort = 3) AS c3_den_count,
    CAST(0 AS BIGINT) AS c3_den_value_count,
    CAST(0 AS DOUBLE) AS c3_den_sum,
    CAST(NULL AS DOUBLE) AS c3_den_max
  FROM phased_events
  GROUP BY
    unit_id,
    metric_id,
    first_exposed_at
), metric_aggs AS (
  SELECT DISTINCT
    metric_id,
    y_agg,
    x_agg,
    c_agg,
    d_agg
  FROM abflow_metric_events
), unit_metric_values AS (
  SELECT
    a.unit_id AS unit_id,
    a.variant_key AS variant_key,
    a.metric_id,
    CASE m.y_agg
      WHEN 'any'
      THEN CASE WHEN a.num_count > 0 THEN 1.0 ELSE 0.0 END
      WHEN 'sum'
      THEN COALESCE(a.num_sum, 0.0)
      WHEN 'count'
      THEN CAST(a.num_count AS DOUBLE)
      WHEN 'mean'
      THEN a.num_mean
      WHEN 'max'
      THEN a.num_max
    END AS y,
    CASE m.x_agg
      WHEN 'sum'
      THEN COALESCE(a.den_sum, 0.0)
      WHEN 'count'
      THEN CAST(a.den_count AS DOUBLE)
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
      THEN CAST(a.pre_count AS DOUBLE)
      WHEN 'mean'
      THEN COALESCE(a.pre_mean, 0.0)
      WHEN 'max'
      THEN COALESCE(a.pre_max, 0.0)
    END AS c,
    CASE m.d_agg
      WHEN 'sum'
      THEN COALESCE(a.den_pre_sum, 0.0)
      WHEN 'count'
      THEN CAST(a.den_pre_count AS DOUBLE)
      WHEN 'mean'
      THEN COALESCE(a.den_pre_mean, 0.0)
      WHEN 'max'
      THEN COALESCE(a.den_pre_max, 0.0)
    END AS d,
    a.early_count > 0 AS contaminated,
    a.c0_rows > 0 AS in_0,
    CASE m.y_agg
      WHEN 'any'
      THEN CASE WHEN a.c0_num_count > 0 THEN 1.0 ELSE 0.0 END
      WHEN 'sum'
      THEN COALESCE(a.c0_num_sum, 0.0)
      WHEN 'count'
      THEN CAST(a.c0_num_count AS DOUBLE)
      WHEN 'mean'
      THEN a.c0_num_sum / NULLIF(CAST(a.c0_num_value_count AS DOUBLE), 0.0)
      WHEN 'max'
      THEN a.c0_num_max
    END AS y_0,
    CASE m.x_agg
      WHEN 'sum'
      THEN COALESCE(a.c0_den_sum, 0.0)
      WHEN 'count'
      THEN CAST(a.c0_den_count AS DOUBLE)
      WHEN 'mean'
      THEN a.c0_den_sum / NULLIF(CAST(a.c0_den_value_count AS DOUBLE), 0.0)
      WHEN 'max'
      THEN a.c0_den_max
    END AS x_0,
    a.c1_num_count + a.c1_den_count > 0
    AND (
      a.first_exposed_at + INTERVAL (CAST($cohort_1_day AS INT)) DAY
    ) <= $as_of AS in_1,
    CASE m.y_agg
      WHEN 'any'
      THEN CASE WHEN a.c1_num_count > 0 THEN 1.0 ELSE 0.0 END
      WHEN 'sum'
      THEN COALESCE(a.c1_num_sum, 0.0)
      WHEN 'count'
      THEN CAST(a.c1_num_count AS DOUBLE)
      WHEN 'mean'
      THEN a.c1_num_sum / NULLIF(CAST(a.c1_num_value_count AS DOUBLE), 0.0)
      WHEN 'max'
      THEN a.c1_num_max
    END AS y_1,
    CASE m.x_agg
      WHEN 'sum'
      THEN COALESCE(a.c1_den_sum, 0.0)
      WHEN 'count'
      THEN CAST(a.c1_den_count AS DOUBLE)
      WHEN 'mean'
      THEN a.c1_den_sum / NULLIF(CAST(a.c1_den_value_count AS DOUBLE), 0.0)
      WHEN 'max'
      THEN a.c1_den_max
    END AS x_1,
    a.c2_num_count + a.c2_den_count > 0
    AND (
      a.first_exposed_at + INTERVAL (CAST($cohort_2_day AS INT)) DAY
    ) <= $as_of AS in_2,
    CASE m.y_agg
      WHEN 'any'
      THEN CASE WHEN a.c2_num_count > 0 THEN 1.0 ELSE 0.0 END
      WHEN 'sum'
      THEN COALESCE(a.c2_num_sum, 0.0)
      WHEN 'count'
      THEN CAST(a.c2_num_count AS DOUBLE)
      WHEN 'mean'
      THEN a.c2_num_sum / NULLIF(CAST(a.c2_num_value_count AS DOUBLE), 0.0)
      WHEN 'max'
      THEN a.c2_num_max
    END AS y_2,
    CASE m.x_agg
      WHEN 'sum'
      THEN COALESCE(a.c2_den_sum, 0.0)
      WHEN 'count'
      THEN CAST(a.c2_den_count AS DOUBLE)
      WHEN 'mean'
      THEN a.c2_den_sum / NULLIF(CAST(a.c2_den_value_count AS DOUBLE), 0.0)
      WHEN 'max'
      THEN a.c2_den_max
    END AS x_2,
    a.c3_num_count + a.c3_den_count > 0
    AND (
      a.first_exposed_at + INTERVAL (CAST($cohort_3_day AS INT)) DAY
    ) <= $as_of AS in_3,
    CASE m.y_agg
      WHEN 'any'
      THEN CASE WHEN a.c3_num_count > 0 THEN 1.0 ELSE 0.0 END
      WHEN 'sum'
      THEN COALESCE(a.c3_num_sum, 0.0)
      WHEN 'count'
      THEN CAST(a.c3_num_count AS DOUBLE)
      WHEN 'mean'
      THEN a.c3_num_sum / NULLIF(CAST(a.c3_num_value_count AS DOUBLE), 0.0)
      WHEN 'max'
      THEN a.c3_num_max
    END AS y_3,
    CASE m.x_agg
      WHEN 'sum'
      THEN COALESCE(a.c3_den_sum, 0.0)
      WHEN 'count'
      THEN CAST(a.c3_den_count AS DOUBLE)
      WHEN 'mean'
      THEN a.c3_den_sum / NULLIF(CAST(a.c3_den_value_count AS DOUBLE), 0.0)
      WHEN 'max'
      THEN a.c3_den_max
    END AS x_3
  FROM unit_metric_aggregates AS a
  INNER JOIN metric_aggs AS m
    ON m.metric_id = a.metric_id
)
SELECT
  *
FROM unit_metric_values;

-- [5] metric_stats: rows come back to Python
WITH all_units AS (
  SELECT
    COUNT(*) AS units
  FROM abflow_unit_segments
  WHERE
    segment = 'all'
), metric_nulls AS (
  SELECT DISTINCT
    metric_id,
    metric_key,
    y_agg IN ('any', 'sum', 'count') AS y_zero,
    COALESCE(x_agg IN ('sum', 'count'), FALSE) AS x_zero,
    c_agg IS NOT NULL AS c_zero,
    COALESCE(d_agg IN ('sum', 'count', 'mean', 'max'), FALSE) AS d_zero
  FROM abflow_metric_events
), cap_specs AS (
  SELECT DISTINCT
    metric_id,
    'y' AS variable,
    num_cap_type AS cap_type,
    num_cap_lower AS cap_lower,
    num_cap_upper AS cap_upper,
    num_cap_ignore_zeros AS ignore_zeros,
    y_agg IN ('any', 'sum', 'count') AS zero_filled
  FROM abflow_metric_events
  WHERE
    num_cap_type IS NOT NULL
  UNION ALL
  SELECT DISTINCT
    metric_id,
    'c',
    num_cap_type,
    num_cap_lower,
    num_cap_upper,
    num_cap_ignore_zeros,
    y_agg IN ('any', 'sum', 'count')
  FROM abflow_metric_events
  WHERE
    num_cap_type IS NOT NULL AND c_agg IS NOT NULL
  UNION ALL
  SELECT DISTINCT
    metric_id,
    'x',
    den_cap_type,
    den_cap_lower,
    den_cap_upper,
    den_cap_ignore_zeros,
    y_agg IN ('any', 'sum', 'count') AND x_agg IN ('sum', 'count')
  FROM abflow_metric_events
  WHERE
    den_cap_type IS NOT NULL AND x_agg IS NOT NULL
  UNION ALL
  SELECT DISTINCT
    metric_id,
    'd',
    den_cap_type,
    den_cap_lower,
    den_cap_upper,
    den_cap_ignore_zeros,
    y_agg IN ('any', 'sum', 'count')
  FROM abflow_metric_events
  WHERE
    den_cap_type IS NOT NULL AND d_agg IS NOT NULL
), cap_values AS (
  SELECT
    metric_id,
    variable,
    v,
    ignore_zeros,
    zero_filled
  FROM (
    SELECT
      uv.metric_id,
      cs.variable,
      cs.ignore_zeros,
      cs.zero_filled,
      CASE cs.variable WHEN 'y' THEN uv.y WHEN 'x' THEN uv.x WHEN 'c' THEN uv.c ELSE uv.d END AS v
    FROM abflow_unit_values AS uv
    INNER JOIN cap_specs AS cs
      ON cs.metric_id = uv.metric_id AND cs.cap_type = 'percentile'
    WHERE
      uv.y IS NOT NULL
  ) AS picked
  WHERE
    v IS NOT NULL AND NOT (
      ignore_zeros AND v = 0.0
    )
), value_counts AS (
  SELECT
    metric_id,
    COUNT(*) AS units
  FROM abflow_unit_values
  WHERE
    y IS NOT NULL
  GROUP BY
    metric_id
), ranked_values AS (
  SELECT
    cv.metric_id,
    cv.variable,
    cv.v,
    ROW_NUMBER() OVER (PARTITION BY cv.metric_id, cv.variable ORDER BY cv.v) - 1 + CASE WHEN cv.v >= 0.0 THEN iz.zeros ELSE 0 END AS value_rank,
    COUNT(*) OVER (PARTITION BY cv.metric_id, cv.variable) + iz.zeros AS n
  FROM cap_values AS cv
  INNER JOIN (
    SELECT
      cs.metric_id,
      cs.variable,
      CASE
        WHEN cs.zero_filled AND NOT cs.ignore_zeros
        THEN au.units - COALESCE(vc.units, 0)
        ELSE 0
      END AS zeros
    FROM cap_specs AS cs
    CROSS JOIN all_units AS au
    LEFT JOIN value_counts AS vc
      ON vc.metric_id = cs.metric_id
  ) AS iz
    ON iz.metric_id = cv.metric_id AND iz.variable = cv.variable
), positioned AS (
  SELECT
    metric_id,
    variable,
    v,
    value_rank,
    FLOOR(cs_lower * (
      CAST(n AS DOUBLE) - 1.0
    )) AS lower_k,
    cs_lower * (
      CAST(n AS DOUBLE) - 1.0
    ) - FLOOR(cs_lower * (
      CAST(n AS DOUBLE) - 1.0
    )) AS lower_frac,
    FLOOR(cs_upper * (
      CAST(n AS DOUBLE) - 1.0
    )) AS upper_k,
    cs_upper * (
      CAST(n AS DOUBLE) - 1.0
    ) - FLOOR(cs_upper * (
      CAST(n AS DOUBLE) - 1.0
    )) AS upper_frac
  FROM (
    SELECT
      rv.*,
      cs.cap_lower AS cs_lower,
      cs.cap_upper AS cs_upper
    FROM ranked_values AS rv
    INNER JOIN cap_specs AS cs
      ON cs.metric_id = rv.metric_id AND cs.variable = rv.variable
  ) AS with_spec
), percentile_caps AS (
  SELECT
    metric_id,
    variable,
    COALESCE(MAX(CASE WHEN value_rank = lower_k THEN v END), 0.0) + MAX(lower_frac) * (
      COALESCE(MAX(CASE WHEN value_rank = lower_k + 1 THEN v END), 0.0) - COALESCE(MAX(CASE WHEN value_rank = lower_k THEN v END), 0.0)
    ) AS pct_lower,
    COALESCE(MAX(CASE WHEN value_rank = upper_k THEN v END), 0.0) + MAX(upper_frac) * (
      COALESCE(MAX(CASE WHEN value_rank = upper_k + 1 THEN v END), 0.0) - COALESCE(MAX(CASE WHEN value_rank = upper_k THEN v END), 0.0)
    ) AS pct_upper
  FROM positioned
  GROUP BY
    metric_id,
    variable
), variable_caps AS (
  SELECT
    cs.metric_id,
    cs.variable,
    CASE
      WHEN cs.cap_type = 'absolute'
      THEN cs.cap_lower
      WHEN cs.cap_lower IS NOT NULL
      THEN pc.pct_lower
    END AS cap_lower,
    CASE
      WHEN cs.cap_type = 'absolute'
      THEN cs.cap_upper
      WHEN cs.cap_upper IS NOT NULL
      THEN pc.pct_upper
    END AS cap_upper
  FROM cap_specs AS cs
  LEFT JOIN percentile_caps AS pc
    ON pc.metric_id = cs.metric_id AND pc.variable = cs.variable
), metric_versions AS (
  SELECT
    metric_id,
    FALSE AS capped,
    CAST(NULL AS DOUBLE) AS y_lower,
    CAST(NULL AS DOUBLE) AS y_upper,
    CAST(NULL AS DOUBLE) AS x_lower,
    CAST(NULL AS DOUBLE) AS x_upper,
    CAST(NULL AS DOUBLE) AS c_lower,
    CAST(NULL AS DOUBLE) AS c_upper,
    CAST(NULL AS DOUBLE) AS d_lower,
    CAST(NULL AS DOUBLE) AS d_upper
  FROM metric_nulls
  UNION ALL
  SELECT
    metric_id,
    TRUE,
    MAX(CASE WHEN variable = 'y' THEN cap_lower END),
    MAX(CASE WHEN variable = 'y' THEN cap_upper END),
    MAX(CASE WHEN variable = 'x' THEN cap_lower END),
    MAX(CASE WHEN variable = 'x' THEN cap_upper END),
    MAX(CASE WHEN variable = 'c' THEN cap_lower END),
    MAX(CASE WHEN variable = 'c' THEN cap_upper END),
    MAX(CASE WHEN variable = 'd' THEN cap_lower END),
    MAX(CASE WHEN variable = 'd' THEN cap_upper END)
  FROM variable_caps
  GROUP BY
    metric_id
), version_values AS (
  SELECT
    uv.unit_id,
    uv.variant_key,
    uv.metric_id,
    mv.capped,
    CASE
      WHEN uv.y > mv.y_upper
      THEN mv.y_upper
      WHEN uv.y < mv.y_lower
      THEN mv.y_lower
      ELSE uv.y
    END AS y,
    CASE
      WHEN uv.x > mv.x_upper
      THEN mv.x_upper
      WHEN uv.x < mv.x_lower
      THEN mv.x_lower
      ELSE uv.x
    END AS x,
    CASE
      WHEN uv.c > mv.c_upper
      THEN mv.c_upper
      WHEN uv.c < mv.c_lower
      THEN mv.c_lower
      ELSE uv.c
    END AS c,
    CASE
      WHEN uv.d > mv.d_upper
      THEN mv.d_upper
      WHEN uv.d < mv.d_lower
      THEN mv.d_lower
      ELSE uv.d
    END AS d,
    uv.contaminated
  FROM abflow_unit_values AS uv
  INNER JOIN metric_versions AS mv
    ON mv.metric_id = uv.metric_id
), segment_values AS (
  SELECT
    metric_id,
    capped,
    variant_key,
    'all' AS segment,
    y,
    x,
    c,
    d,
    contaminated
  FROM version_values
  UNION ALL
  SELECT
    vv.metric_id,
    vv.capped,
    us.variant_key,
    us.segment,
    vv.y,
    vv.x,
    vv.c,
    vv.d,
    vv.contaminated
  FROM version_values AS vv
  INNER JOIN abflow_unit_segments AS us
    ON us.unit_id = vv.unit_id AND us.segment <> 'all'
), value_sums AS (
  SELECT
    metric_id,
    capped,
    variant_key,
    segment,
    COUNT(y) AS units,
    SUM(y) AS sum,
    SUM(y * y) AS sum_squares,
    SUM(x) AS denominator_sum,
    SUM(x * x) AS denominator_sum_squares,
    SUM(x * y) AS sum_products,
    SUM(c) FILTER(WHERE
      y IS NOT NULL) AS covariate_sum,
    SUM(c * c) FILTER(WHERE
      y IS NOT NULL) AS covariate_sum_squares,
    SUM(c * y) AS covariate_sum_products,
    SUM(d) FILTER(WHERE
      y IS NOT NULL) AS denominator_covariate_sum,
    SUM(d * d) FILTER(WHERE
      y IS NOT NULL) AS denominator_covariate_sum_squares,
    SUM(d * x) AS denominator_covariate_sum_products,
    SUM(c * d) AS covariate_cross_sum_products,
    SUM(y * d) AS numerator_denominator_covariate_sum_products,
    SUM(c * x) AS covariate_denominator_sum_products,
    COUNT(*) FILTER(WHERE
      contaminated) AS contaminated_units
  FROM segment_values
  GROUP BY
    metric_id,
    capped,
    variant_key,
    segment
), exposed AS (
  SELECT
    variant_key,
    segment,
    COUNT(*) AS exposed_units
  FROM abflow_unit_segments
  GROUP BY
    variant_key,
    segment
), versions AS (
  SELECT
    mv.*,
    m.metric_key,
    m.y_zero,
    m.x_zero,
    m.c_zero,
    m.d_zero,
    m.y_zero AND m.x_zero AND m.c_zero AND m.d_zero AS all_zero,
    CASE
      WHEN 0.0 > mv.y_upper
      THEN mv.y_upper
      WHEN 0.0 < mv.y_lower
      THEN mv.y_lower
      ELSE 0.0
    END AS zy,
    CASE
      WHEN 0.0 > mv.x_upper
      THEN mv.x_upper
      WHEN 0.0 < mv.x_lower
      THEN mv.x_lower
      ELSE 0.0
    END AS zx,
    CASE
      WHEN 0.0 > mv.c_upper
      THEN mv.c_upper
      WHEN 0.0 < mv.c_lower
      THEN mv.c_lower
      ELSE 0.0
    END AS zc,
    CASE
      WHEN 0.0 > mv.d_upper
      THEN mv.d_upper
      WHEN 0.0 < mv.d_lower
      THEN mv.d_lower
      ELSE 0.0
    END AS zd
  FROM metric_versions AS mv
  INNER JOIN metric_nulls AS m
    ON m.metric_id = mv.metric_id
), joined AS (
  SELECT
    v.*,
    ex.variant_key,
    ex.segment,
    ex.exposed_units,
    vs.units AS value_units,
    vs.sum AS s_y,
    vs.sum_squares AS s_yy,
    vs.denominator_sum AS s_x,
    vs.denominator_sum_squares AS s_xx,
    vs.sum_products AS s_xy,
    vs.covariate_sum AS s_c,
    vs.covariate_sum_squares AS s_cc,
    vs.covariate_sum_products AS s_cy,
    vs.denominator_covariate_sum AS s_d,
    vs.denominator_covariate_sum_squares AS s_dd,
    vs.denominator_covariate_sum_products AS s_dx,
    vs.covariate_cross_sum_products AS s_cd,
    vs.numerator_denominator_covariate_sum_products AS s_yd,
    vs.covariate_denominator_sum_products AS s_cx,
    COALESCE(vs.contaminated_units, 0) AS contaminated_units,
    CAST(CASE WHEN v.y_zero THEN ex.exposed_units - COALESCE(vs.units, 0) ELSE 0 END AS DOUBLE) AS missing
  FROM exposed AS ex
  CROSS JOIN versions AS v
  LEFT JOIN value_sums AS vs
    ON vs.metric_id = v.metric_id
    AND vs.capped = v.capped
    AND vs.variant_key = ex.variant_key
    AND vs.segment = ex.segment
), final AS (
  SELECT
    metric_key,
    variant_key,
    segment,
    capped,
    exposed_units,
    CASE WHEN y_zero THEN exposed_units ELSE COALESCE(value_units, 0) END AS units,
    COALESCE(s_y, 0.0) + missing * zy AS sum,
    COALESCE(s_yy, 0.0) + missing * zy * zy AS sum_squares,
    CASE WHEN x_zero THEN COALESCE(s_x, 0.0) + missing * zx ELSE s_x END AS denominator_sum,
    CASE WHEN x_zero THEN COALESCE(s_xx, 0.0) + missing * zx * zx ELSE s_xx END AS denominator_sum_squares,
    CASE
      WHEN x_zero AND y_zero
      THEN COALESCE(s_xy, 0.0) + missing * zx * zy
      ELSE s_xy
    END AS sum_products,
    CASE WHEN c_zero AND y_zero THEN COALESCE(s_c, 0.0) + missing * zc ELSE s_c END AS covariate_sum,
    CASE
      WHEN c_zero AND y_zero
      THEN COALESCE(s_cc, 0.0) + missing * zc * zc
      ELSE s_cc
    END AS covariate_sum_squares,
    CASE
      WHEN c_zero AND y_zero
      THEN COALESCE(s_cy, 0.0) + missing * zc * zy
      ELSE s_cy
    END AS covariate_sum_products,
    CASE WHEN all_zero THEN COALESCE(s_d, 0.0) + missing * zd ELSE s_d END AS denominator_covariate_sum,
    CASE WHEN all_zero THEN COALESCE(s_dd, 0.0) + missing * zd * zd ELSE s_dd END AS denominator_covariate_sum_squares,
    CASE WHEN all_zero THEN COALESCE(s_dx, 0.0) + missing * zd * zx ELSE s_dx END AS denominator_covariate_sum_products,
    CASE WHEN all_zero THEN COALESCE(s_cd, 0.0) + missing * zc * zd ELSE s_cd END AS covariate_cross_sum_products,
    CASE WHEN all_zero THEN COALESCE(s_yd, 0.0) + missing * zy * zd ELSE s_yd END AS numerator_denominator_covariate_sum_products,
    CASE WHEN all_zero THEN COALESCE(s_cx, 0.0) + missing * zc * zx ELSE s_cx END AS covariate_denominator_sum_products,
    contaminated_units,
    y_lower AS cap_lower,
    y_upper AS cap_upper,
    x_lower AS denominator_cap_lower,
    x_upper AS denominator_cap_upper,
    c_lower AS covariate_cap_lower,
    c_upper AS covariate_cap_upper,
    d_lower AS denominator_covariate_cap_lower,
    d_upper AS denominator_covariate_cap_upper
  FROM joined
)
SELECT
  *
FROM final
ORDER BY
  metric_key,
  variant_key,
  segment,
  capped;

-- [6] metric_quantiles: rows come back to Python
-- parameters:
--   as_of = 2026-11-21T00:00:00+00:00
--   bound_z = 1.959963984540054
--   cohort_1_day = 7
--   cohort_2_day = 14
--   cohort_3_day = 21
--   exposure_age = 0
--   filter_3_den_1_1 = 'ios'
--   filter_3_den_1_2 = 'android'
--   filter_3_den_2_1 = 10.0
--   filter_3_num_1_1 = 'ios'
--   filter_3_num_1_2 = 'android'
--   filter_3_num_2_1 = 10.0
--   lookback_days = 14
--   quantile_defs_1_level = 'unit'
--   quantile_defs_1_metric_id = 6
--   quantile_defs_1_metric_key = 'latency_p90_ms'
--   quantile_defs_1_nu = 0.9
--   quantile_defs_1_zero_fill = 0
--   start_at = 2026-11-01T00:00:00+00:00
--   value_limit = 1000000000000.0
WITH quantile_defs AS (
  SELECT
    CAST($quantile_defs_1_metric_id AS INT) AS metric_id,
    CAST($quantile_defs_1_metric_key AS TEXT) AS metric_key,
    CAST($quantile_defs_1_level AS TEXT) AS level,
    CAST($quantile_defs_1_nu AS DOUBLE) AS nu,
    CAST($quantile_defs_1_zero_fill AS INT) AS zero_fill
), quantile_events_unit_metric_events AS (
  SELECT DISTINCT
    u.unit_id AS unit_id,
    m.metric_id,
    u.first_exposed_at,
    e.occurred_at,
    CASE WHEN ABS(e.value) <= $value_limit THEN e.value END AS value,
    m.is_num
    AND CASE m.metric_id
      WHEN 3
      THEN (
        e.properties ->> '$.platform'
      ) IN ($filter_3_num_1_1, $filter_3_num_1_2)
      AND CASE
        WHEN REGEXP_MATCHES((
          e.properties ->> '$.amount'
        ), '^-?[0-9]+([.][0-9]+)?([eE][-+]?[0-9]+)?$')
        THEN CAST(e.properties ->> '$.amount' AS DOUBLE)
      END >= $filter_3_num_2_1
      ELSE TRUE
    END AS is_num,
    m.is_den
    AND CASE m.metric_id
      WHEN 3
      THEN (
        e.properties ->> '$.platform'
      ) IN ($filter_3_den_1_1, $filter_3_den_1_2)
      AND CASE
        WHEN REGEXP_MATCHES((
          e.properties ->> '$.amount'
        ), '^-?[0-9]+([.][0-9]+)?([eE][-+]?[0-9]+)?$')
        THEN CAST(e.properties ->> '$.amount' AS DOUBLE)
      END >= $filter_3_den_2_1
      ELSE TRUE
    END AS is_den,
    e.occurred_at >= u.first_exposed_at AS post,
    e.occurred_at < u.first_exposed_at
    AND e.occurred_at >= (
      u.first_exposed_at + INTERVAL (-(
        CAST($lookback_days AS INT)
      )) DAY
    ) AS in_lookback,
    e.occurred_at < u.first_exposed_at AND e.occurred_at >= $start_at AS early,
    CASE
      WHEN CAST($exposure_age AS INT) = 0
      THEN -1
      WHEN e.occurred_at < LEAST(u.first_exposed_at, $start_at)
      THEN -1
      WHEN e.occurred_at < u.first_exposed_at
      THEN 4
      WHEN e.occurred_at < (
        u.first_exposed_at + INTERVAL (CAST($cohort_1_day AS INT)) DAY
      )
      THEN 0
      WHEN e.occurred_at < (
        u.first_exposed_at + INTERVAL (CAST($cohort_2_day AS INT)) DAY
      )
      THEN 1
      WHEN e.occurred_at < (
        u.first_exposed_at + INTERVAL (CAST($cohort_3_day AS INT)) DAY
      )
      THEN 2
      ELSE 3
    END AS exposure_cohort,
    u.variant_key AS variant_key
  FROM abflow_units AS u
  INNER JOIN "events" AS e
    ON e.unit_id = u.unit_id
    AND e.occurred_at <= $as_of
    AND e.occurred_at >= LEAST(u.first_exposed_at + INTERVAL (-(
      CAST($lookback_days AS INT)
    )) DAY, $start_at)
  INNER JOIN abflow_metric_events AS m
    ON m.event_name = e.event_name
    AND (
      m.window_seconds IS NULL
      OR e.occurred_at < (
        u.first_exposed_at + INTERVAL (m.window_seconds) SECOND
      )
    )
  WHERE
    (
      (
        m.is_num
        AND CASE m.metric_id
          WHEN 3
          THEN (
            e.properties ->> '$.platform'
          ) IN ($filter_3_num_1_1, $filter_3_num_1_2)
          AND CASE
            WHEN REGEXP_MATCHES((
              e.properties ->> '$.amount'
            ), '^-?[0-9]+([.][0-9]+)?([eE][-+]?[0-9]+)?$')
            THEN CAST(e.properties ->> '$.amount' AS DOUBLE)
          END >= $filter_3_num_2_1
          ELSE TRUE
        END
      )
      OR (
        m.is_den
        AND CASE m.metric_id
          WHEN 3
          THEN (
            e.properties ->> '$.platform'
          ) IN ($filter_3_den_1_1, $filter_3_den_1_2)
          AND CASE
            WHEN REGEXP_MATCHES((
              e.properties ->> '$.amount'
            ), '^-?[0-9]+([.][0-9]+)?([eE][-+]?[0-9]+)?$')
            THEN CAST(e.properties ->> '$.amount' AS DOUBLE)
          END >= $filter_3_den_2_1
          ELSE TRUE
        END
      )
    )
    AND FALSE
), quantile_events_phased_events AS (
  SELECT
    unit_id,
    variant_key,
    metric_id,
    first_exposed_at,
    value,
    is_num AND post AS num_post,
    is_den AND post AS den_post,
    is_num AND in_lookback AS num_pre,
    is_den AND in_lookback AS den_pre,
    is_num AND early AS num_early,
    is_num,
    is_den,
    exposure_cohort
  FROM quantile_events_unit_metric_events AS unit_metric_events
), quantile_events AS (
  SELECT
    *
  FROM quantile_events_phased_events AS phased_events
), unit_observations AS (
  SELECT
    q.metric_id,
    us.variant_key,
    us.segment,
    us.unit_id,
    CASE WHEN q.zero_fill = 1 THEN COALESCE(uv.y, 0.0) ELSE uv.y END AS y
  FROM abflow_unit_segments AS us
  CROSS JOIN quantile_defs AS q
  LEFT JOIN abflow_unit_values AS uv
    ON uv.unit_id = us.unit_id AND uv.metric_id = q.metric_id
  WHERE
    q.level = 'unit'
), event_observations AS (
  SELECT
    q.metric_id,
    us.variant_key,
    us.segment,
    e.unit_id,
    e.value AS y
  FROM quantile_events AS e
  INNER JOIN quantile_defs AS q
    ON q.metric_id = e.metric_id
  INNER JOIN abflow_unit_segments AS us
    ON us.unit_id = e.unit_id
  WHERE
    q.level = 'event' AND e.num_post
), observations AS (
  SELECT
    metric_id,
    variant_key,
    segment,
    unit_id,
    y
  FROM unit_observations
  WHERE
    y IS NOT NULL
  UNION ALL
  SELECT
    metric_id,
    variant_key,
    segment,
    unit_id,
    y
  FROM event_observations
  WHERE
    y IS NOT NULL
), ranked AS (
  SELECT
    metric_id,
    variant_key,
    segment,
    y,
    ROW_NUMBER() OVER (PARTITION BY metric_id, variant_key, segment ORDER BY y) AS rn,
    CAST(COUNT(*) OVER (PARTITION BY metric_id, variant_key, segment) AS DOUBLE) AS n
  FROM observations
), positions AS (
  SELECT
    r.metric_id,
    r.variant_key,
    r.segment,
    r.y,
    r.rn,
    r.n,
    (
      r.n - 1.0
    ) * q.nu + 1.0 AS h_quantile,
    (
      r.n - 1.0
    ) * GREATEST(q.nu - $bound_z * SQRT(q.nu * (
      1.0 - q.nu
    ) / r.n), 1e-8) + 1.0 AS h_lower,
    (
      r.n - 1.0
    ) * LEAST(q.nu + $bound_z * SQRT(q.nu * (
      1.0 - q.nu
    ) / r.n), 1.0 - 1e-8) + 1.0 AS h_upper
  FROM ranked AS r
  INNER JOIN quantile_defs AS q
    ON q.metric_id = r.metric_id
), order_statistics AS (
  SELECT
    metric_id,
    variant_key,
    segment,
    MAX(n) AS n,
    MAX(h_quantile) AS h_quantile,
    MAX(h_lower) AS h_lower,
    MAX(h_upper) AS h_upper,
    MAX(CASE WHEN rn = FLOOR(h_quantile) THEN y END) AS quantile_at,
    MAX(CASE WHEN rn = FLOOR(h_quantile) + 1 THEN y END) AS quantile_next,
    MAX(CASE WHEN rn = FLOOR(h_lower) THEN y END) AS lower_at,
    MAX(CASE WHEN rn = FLOOR(h_lower) + 1 THEN y END) AS lower_next,
    MAX(CASE WHEN rn = FLOOR(h_upper) THEN y END) AS upper_at,
    MAX(CASE WHEN rn = FLOOR(h_upper) + 1 THEN y END) AS upper_next
  FROM positions
  WHERE
    rn >= FLOOR(h_lower) AND rn <= FLOOR(h_upper) + 1
  GROUP BY
    metric_id,
    variant_key,
    segment
), estimates AS (
  SELECT
    metric_id,
    variant_key,
    segment,
    n,
    quantile_at + (
      h_quantile - FLOOR(h_quantile)
    ) * (
      COALESCE(quantile_next, quantile_at) - quantile_at
    ) AS quantile,
    lower_at + (
      h_lower - FLOOR(h_lower)
    ) * (
      COALESCE(lower_next, lower_at) - lower_at
    ) AS quantile_lower,
    upper_at + (
      h_upper - FLOOR(h_upper)
    ) * (
      COALESCE(upper_next, upper_at) - upper_at
    ) AS quantile_upper
  FROM order_statistics
), unit_counts AS (
  SELECT
    o.metric_id,
    o.variant_key,
    o.segment,
    CAST(COUNT(*) FILTER(WHERE
      o.y <= e.quantile) AS DOUBLE) AS below,
    CAST(COUNT(*) AS DOUBLE) AS events
  FROM event_observations AS o
  INNER JOIN estimates AS e
    ON e.metric_id = o.metric_id
    AND e.variant_key = o.variant_key
    AND e.segment = o.segment
  WHERE
    o.y IS NOT NULL
  GROUP BY
    o.metric_id,
    o.variant_key,
    o.segment,
    o.unit_id
), cluster_moments AS (
  SELECT
    metric_id,
    variant_key,
    segment,
    COUNT(*) AS n_clusters,
    SUM(below) AS below_sum,
    SUM(below * below) AS below_sum_squares,
    SUM(events) AS events_sum,
    SUM(events * events) AS events_sum_squares,
    SUM(below * events) AS below_events_sum_products
  FROM unit_counts
  GROUP BY
    metric_id,
    variant_key,
    segment
), final AS (
  SELECT
    q.metric_key,
    e.variant_key,
    e.segment,
    CAST(e.n AS BIGINT) AS quantile_n,
    e.quantile,
    e.quantile_lower,
    e.quantile_upper,
    c.n_clusters,
    c.below_sum,
    c.below_sum_squares,
    c.events_sum,
    c.events_sum_squares,
    c.below_events_sum_products
  FROM estimates AS e
  INNER JOIN quantile_defs AS q
    ON q.metric_id = e.metric_id
  LEFT JOIN cluster_moments AS c
    ON c.metric_id = e.metric_id
    AND c.variant_key = e.variant_key
    AND c.segment = e.segment
)
SELECT
  *
FROM final
ORDER BY
  metric_key,
  variant_key,
  segment;

-- [7] exposure_age_stats: rows come back to Python
-- parameters:
--   as_of = 2026-11-21T00:00:00+00:00
--   cohort_0_day = 0
--   cohort_0_segment = '@exposure_age=0-6'
--   cohort_1_day = 7
--   cohort_1_segment = '@exposure_age=7-13'
--   cohort_2_day = 14
--   cohort_2_segment = '@exposure_age=14-20'
--   cohort_3_day = 21
--   cohort_3_segment = '@exposure_age=21+'
WITH exposure_age_cohorts AS (
  SELECT
    0 AS cohort,
    CAST($cohort_0_day AS INT) AS first_day,
    CAST($cohort_0_segment AS TEXT) AS segment
  UNION ALL
  SELECT
    1 AS cohort,
    CAST($cohort_1_day AS INT) AS first_day,
    CAST($cohort_1_segment AS TEXT) AS segment
  UNION ALL
  SELECT
    2 AS cohort,
    CAST($cohort_2_day AS INT) AS first_day,
    CAST($cohort_2_segment AS TEXT) AS segment
  UNION ALL
  SELECT
    3 AS cohort,
    CAST($cohort_3_day AS INT) AS first_day,
    CAST($cohort_3_segment AS TEXT) AS segment
), exposure_age_values_final AS (
  SELECT
    unit_id || ':0' AS unit_id,
    variant_key,
    metric_id,
    y_0 AS y,
    x_0 AS x,
    CAST(NULL AS DOUBLE) AS c,
    CAST(NULL AS DOUBLE) AS d,
    FALSE AS contaminated
  FROM abflow_unit_values
  WHERE
    in_0
  UNION ALL
  SELECT
    unit_id || ':1' AS unit_id,
    variant_key,
    metric_id,
    y_1 AS y,
    x_1 AS x,
    CAST(NULL AS DOUBLE) AS c,
    CAST(NULL AS DOUBLE) AS d,
    FALSE AS contaminated
  FROM abflow_unit_values
  WHERE
    in_1
  UNION ALL
  SELECT
    unit_id || ':2' AS unit_id,
    variant_key,
    metric_id,
    y_2 AS y,
    x_2 AS x,
    CAST(NULL AS DOUBLE) AS c,
    CAST(NULL AS DOUBLE) AS d,
    FALSE AS contaminated
  FROM abflow_unit_values
  WHERE
    in_2
  UNION ALL
  SELECT
    unit_id || ':3' AS unit_id,
    variant_key,
    metric_id,
    y_3 AS y,
    x_3 AS x,
    CAST(NULL AS DOUBLE) AS c,
    CAST(NULL AS DOUBLE) AS d,
    FALSE AS contaminated
  FROM abflow_unit_values
  WHERE
    in_3
), exposure_age_values AS (
  SELECT
    *
  FROM exposure_age_values_final AS final
), exposure_age_units AS (
  SELECT
    u.unit_id || ':' || CAST(c.cohort AS TEXT) AS unit_id,
    u.variant_key,
    c.segment
  FROM abflow_units AS u
  CROSS JOIN exposure_age_cohorts AS c
  WHERE
    (
      u.first_exposed_at + INTERVAL (c.first_day) DAY
    ) <= $as_of
), all_units AS (
  SELECT
    COUNT(*) AS units
  FROM exposure_age_units AS abflow_unit_segments
  WHERE
    segment = 'all'
), metric_nulls AS (
  SELECT DISTINCT
    metric_id,
    metric_key,
    y_agg IN ('any', 'sum', 'count') AS y_zero,
    COALESCE(x_agg IN ('sum', 'count'), FALSE) AS x_zero,
    c_agg IS NOT NULL AS c_zero,
    COALESCE(d_agg IN ('sum', 'count', 'mean', 'max'), FALSE) AS d_zero
  FROM abflow_metric_events
), cap_specs AS (
  SELECT DISTINCT
    metric_id,
    'y' AS variable,
    num_cap_type AS cap_type,
    num_cap_lower AS cap_lower,
    num_cap_upper AS cap_upper,
    num_cap_ignore_zeros AS ignore_zeros,
    y_agg IN ('any', 'sum', 'count') AS zero_filled
  FROM abflow_metric_events
  WHERE
    num_cap_type IS NOT NULL
  UNION ALL
  SELECT DISTINCT
    metric_id,
    'c',
    num_cap_type,
    num_cap_lower,
    num_cap_upper,
    num_cap_ignore_zeros,
    y_agg IN ('any', 'sum', 'count')
  FROM abflow_metric_events
  WHERE
    num_cap_type IS NOT NULL AND c_agg IS NOT NULL
  UNION ALL
  SELECT DISTINCT
    metric_id,
    'x',
    den_cap_type,
    den_cap_lower,
    den_cap_upper,
    den_cap_ignore_zeros,
    y_agg IN ('any', 'sum', 'count') AND x_agg IN ('sum', 'count')
  FROM abflow_metric_events
  WHERE
    den_cap_type IS NOT NULL AND x_agg IS NOT NULL
  UNION ALL
  SELECT DISTINCT
    metric_id,
    'd',
    den_cap_type,
    den_cap_lower,
    den_cap_upper,
    den_cap_ignore_zeros,
    y_agg IN ('any', 'sum', 'count')
  FROM abflow_metric_events
  WHERE
    den_cap_type IS NOT NULL AND d_agg IS NOT NULL
), cap_values AS (
  SELECT
    metric_id,
    variable,
    v,
    ignore_zeros,
    zero_filled
  FROM (
    SELECT
      uv.metric_id,
      cs.variable,
      cs.ignore_zeros,
      cs.zero_filled,
      CASE cs.variable WHEN 'y' THEN uv.y WHEN 'x' THEN uv.x WHEN 'c' THEN uv.c ELSE uv.d END AS v
    FROM exposure_age_values AS uv
    INNER JOIN cap_specs AS cs
      ON cs.metric_id = uv.metric_id AND cs.cap_type = 'percentile'
    WHERE
      uv.y IS NOT NULL
  ) AS picked
  WHERE
    v IS NOT NULL AND NOT (
      ignore_zeros AND v = 0.0
    )
), value_counts AS (
  SELECT
    metric_id,
    COUNT(*) AS units
  FROM exposure_age_values AS abflow_unit_values
  WHERE
    y IS NOT NULL
  GROUP BY
    metric_id
), ranked_values AS (
  SELECT
    cv.metric_id,
    cv.variable,
    cv.v,
    ROW_NUMBER() OVER (PARTITION BY cv.metric_id, cv.variable ORDER BY cv.v) - 1 + CASE WHEN cv.v >= 0.0 THEN iz.zeros ELSE 0 END AS value_rank,
    COUNT(*) OVER (PARTITION BY cv.metric_id, cv.variable) + iz.zeros AS n
  FROM cap_values AS cv
  INNER JOIN (
    SELECT
      cs.metric_id,
      cs.variable,
      CASE
        WHEN cs.zero_filled AND NOT cs.ignore_zeros
        THEN au.units - COALESCE(vc.units, 0)
        ELSE 0
      END AS zeros
    FROM cap_specs AS cs
    CROSS JOIN all_units AS au
    LEFT JOIN value_counts AS vc
      ON vc.metric_id = cs.metric_id
  ) AS iz
    ON iz.metric_id = cv.metric_id AND iz.variable = cv.variable
), positioned AS (
  SELECT
    metric_id,
    variable,
    v,
    value_rank,
    FLOOR(cs_lower * (
      CAST(n AS DOUBLE) - 1.0
    )) AS lower_k,
    cs_lower * (
      CAST(n AS DOUBLE) - 1.0
    ) - FLOOR(cs_lower * (
      CAST(n AS DOUBLE) - 1.0
    )) AS lower_frac,
    FLOOR(cs_upper * (
      CAST(n AS DOUBLE) - 1.0
    )) AS upper_k,
    cs_upper * (
      CAST(n AS DOUBLE) - 1.0
    ) - FLOOR(cs_upper * (
      CAST(n AS DOUBLE) - 1.0
    )) AS upper_frac
  FROM (
    SELECT
      rv.*,
      cs.cap_lower AS cs_lower,
      cs.cap_upper AS cs_upper
    FROM ranked_values AS rv
    INNER JOIN cap_specs AS cs
      ON cs.metric_id = rv.metric_id AND cs.variable = rv.variable
  ) AS with_spec
), percentile_caps AS (
  SELECT
    metric_id,
    variable,
    COALESCE(MAX(CASE WHEN value_rank = lower_k THEN v END), 0.0) + MAX(lower_frac) * (
      COALESCE(MAX(CASE WHEN value_rank = lower_k + 1 THEN v END), 0.0) - COALESCE(MAX(CASE WHEN value_rank = lower_k THEN v END), 0.0)
    ) AS pct_lower,
    COALESCE(MAX(CASE WHEN value_rank = upper_k THEN v END), 0.0) + MAX(upper_frac) * (
      COALESCE(MAX(CASE WHEN value_rank = upper_k + 1 THEN v END), 0.0) - COALESCE(MAX(CASE WHEN value_rank = upper_k THEN v END), 0.0)
    ) AS pct_upper
  FROM positioned
  GROUP BY
    metric_id,
    variable
), variable_caps AS (
  SELECT
    cs.metric_id,
    cs.variable,
    CASE
      WHEN cs.cap_type = 'absolute'
      THEN cs.cap_lower
      WHEN cs.cap_lower IS NOT NULL
      THEN pc.pct_lower
    END AS cap_lower,
    CASE
      WHEN cs.cap_type = 'absolute'
      THEN cs.cap_upper
      WHEN cs.cap_upper IS NOT NULL
      THEN pc.pct_upper
    END AS cap_upper
  FROM cap_specs AS cs
  LEFT JOIN percentile_caps AS pc
    ON pc.metric_id = cs.metric_id AND pc.variable = cs.variable
), metric_versions AS (
  SELECT
    metric_id,
    FALSE AS capped,
    CAST(NULL AS DOUBLE) AS y_lower,
    CAST(NULL AS DOUBLE) AS y_upper,
    CAST(NULL AS DOUBLE) AS x_lower,
    CAST(NULL AS DOUBLE) AS x_upper,
    CAST(NULL AS DOUBLE) AS c_lower,
    CAST(NULL AS DOUBLE) AS c_upper,
    CAST(NULL AS DOUBLE) AS d_lower,
    CAST(NULL AS DOUBLE) AS d_upper
  FROM metric_nulls
  UNION ALL
  SELECT
    metric_id,
    TRUE,
    MAX(CASE WHEN variable = 'y' THEN cap_lower END),
    MAX(CASE WHEN variable = 'y' THEN cap_upper END),
    MAX(CASE WHEN variable = 'x' THEN cap_lower END),
    MAX(CASE WHEN variable = 'x' THEN cap_upper END),
    MAX(CASE WHEN variable = 'c' THEN cap_lower END),
    MAX(CASE WHEN variable = 'c' THEN cap_upper END),
    MAX(CASE WHEN variable = 'd' THEN cap_lower END),
    MAX(CASE WHEN variable = 'd' THEN cap_upper END)
  FROM variable_caps
  GROUP BY
    metric_id
), version_values AS (
  SELECT
    uv.unit_id,
    uv.variant_key,
    uv.metric_id,
    mv.capped,
    CASE
      WHEN uv.y > mv.y_upper
      THEN mv.y_upper
      WHEN uv.y < mv.y_lower
      THEN mv.y_lower
      ELSE uv.y
    END AS y,
    CASE
      WHEN uv.x > mv.x_upper
      THEN mv.x_upper
      WHEN uv.x < mv.x_lower
      THEN mv.x_lower
      ELSE uv.x
    END AS x,
    CASE
      WHEN uv.c > mv.c_upper
      THEN mv.c_upper
      WHEN uv.c < mv.c_lower
      THEN mv.c_lower
      ELSE uv.c
    END AS c,
    CASE
      WHEN uv.d > mv.d_upper
      THEN mv.d_upper
      WHEN uv.d < mv.d_lower
      THEN mv.d_lower
      ELSE uv.d
    END AS d,
    uv.contaminated
  FROM exposure_age_values AS uv
  INNER JOIN metric_versions AS mv
    ON mv.metric_id = uv.metric_id
), segment_values AS (
  SELECT
    vv.metric_id,
    vv.capped,
    us.variant_key,
    us.segment,
    vv.y,
    vv.x,
    vv.c,
    vv.d,
    vv.contaminated
  FROM version_values AS vv
  INNER JOIN exposure_age_units AS us
    ON us.unit_id = vv.unit_id AND us.segment <> 'all'
), value_sums AS (
  SELECT
    metric_id,
    capped,
    variant_key,
    segment,
    COUNT(y) AS units,
    SUM(y) AS sum,
    SUM(y * y) AS sum_squares,
    SUM(x) AS denominator_sum,
    SUM(x * x) AS denominator_sum_squares,
    SUM(x * y) AS sum_products,
    SUM(c) FILTER(WHERE
      y IS NOT NULL) AS covariate_sum,
    SUM(c * c) FILTER(WHERE
      y IS NOT NULL) AS covariate_sum_squares,
    SUM(c * y) AS covariate_sum_products,
    SUM(d) FILTER(WHERE
      y IS NOT NULL) AS denominator_covariate_sum,
    SUM(d * d) FILTER(WHERE
      y IS NOT NULL) AS denominator_covariate_sum_squares,
    SUM(d * x) AS denominator_covariate_sum_products,
    SUM(c * d) AS covariate_cross_sum_products,
    SUM(y * d) AS numerator_denominator_covariate_sum_products,
    SUM(c * x) AS covariate_denominator_sum_products,
    COUNT(*) FILTER(WHERE
      contaminated) AS contaminated_units
  FROM segment_values
  GROUP BY
    metric_id,
    capped,
    variant_key,
    segment
), exposed AS (
  SELECT
    variant_key,
    segment,
    COUNT(*) AS exposed_units
  FROM exposure_age_units AS abflow_unit_segments
  GROUP BY
    variant_key,
    segment
), versions AS (
  SELECT
    mv.*,
    m.metric_key,
    m.y_zero,
    m.x_zero,
    m.c_zero,
    m.d_zero,
    m.y_zero AND m.x_zero AND m.c_zero AND m.d_zero AS all_zero,
    CASE
      WHEN 0.0 > mv.y_upper
      THEN mv.y_upper
      WHEN 0.0 < mv.y_lower
      THEN mv.y_lower
      ELSE 0.0
    END AS zy,
    CASE
      WHEN 0.0 > mv.x_upper
      THEN mv.x_upper
      WHEN 0.0 < mv.x_lower
      THEN mv.x_lower
      ELSE 0.0
    END AS zx,
    CASE
      WHEN 0.0 > mv.c_upper
      THEN mv.c_upper
      WHEN 0.0 < mv.c_lower
      THEN mv.c_lower
      ELSE 0.0
    END AS zc,
    CASE
      WHEN 0.0 > mv.d_upper
      THEN mv.d_upper
      WHEN 0.0 < mv.d_lower
      THEN mv.d_lower
      ELSE 0.0
    END AS zd
  FROM metric_versions AS mv
  INNER JOIN metric_nulls AS m
    ON m.metric_id = mv.metric_id
), joined AS (
  SELECT
    v.*,
    ex.variant_key,
    ex.segment,
    ex.exposed_units,
    vs.units AS value_units,
    vs.sum AS s_y,
    vs.sum_squares AS s_yy,
    vs.denominator_sum AS s_x,
    vs.denominator_sum_squares AS s_xx,
    vs.sum_products AS s_xy,
    vs.covariate_sum AS s_c,
    vs.covariate_sum_squares AS s_cc,
    vs.covariate_sum_products AS s_cy,
    vs.denominator_covariate_sum AS s_d,
    vs.denominator_covariate_sum_squares AS s_dd,
    vs.denominator_covariate_sum_products AS s_dx,
    vs.covariate_cross_sum_products AS s_cd,
    vs.numerator_denominator_covariate_sum_products AS s_yd,
    vs.covariate_denominator_sum_products AS s_cx,
    COALESCE(vs.contaminated_units, 0) AS contaminated_units,
    CAST(CASE WHEN v.y_zero THEN ex.exposed_units - COALESCE(vs.units, 0) ELSE 0 END AS DOUBLE) AS missing
  FROM exposed AS ex
  CROSS JOIN versions AS v
  LEFT JOIN value_sums AS vs
    ON vs.metric_id = v.metric_id
    AND vs.capped = v.capped
    AND vs.variant_key = ex.variant_key
    AND vs.segment = ex.segment
), final AS (
  SELECT
    metric_key,
    variant_key,
    segment,
    capped,
    exposed_units,
    CASE WHEN y_zero THEN exposed_units ELSE COALESCE(value_units, 0) END AS units,
    COALESCE(s_y, 0.0) + missing * zy AS sum,
    COALESCE(s_yy, 0.0) + missing * zy * zy AS sum_squares,
    CASE WHEN x_zero THEN COALESCE(s_x, 0.0) + missing * zx ELSE s_x END AS denominator_sum,
    CASE WHEN x_zero THEN COALESCE(s_xx, 0.0) + missing * zx * zx ELSE s_xx END AS denominator_sum_squares,
    CASE
      WHEN x_zero AND y_zero
      THEN COALESCE(s_xy, 0.0) + missing * zx * zy
      ELSE s_xy
    END AS sum_products,
    CASE WHEN c_zero AND y_zero THEN COALESCE(s_c, 0.0) + missing * zc ELSE s_c END AS covariate_sum,
    CASE
      WHEN c_zero AND y_zero
      THEN COALESCE(s_cc, 0.0) + missing * zc * zc
      ELSE s_cc
    END AS covariate_sum_squares,
    CASE
      WHEN c_zero AND y_zero
      THEN COALESCE(s_cy, 0.0) + missing * zc * zy
      ELSE s_cy
    END AS covariate_sum_products,
    CASE WHEN all_zero THEN COALESCE(s_d, 0.0) + missing * zd ELSE s_d END AS denominator_covariate_sum,
    CASE WHEN all_zero THEN COALESCE(s_dd, 0.0) + missing * zd * zd ELSE s_dd END AS denominator_covariate_sum_squares,
    CASE WHEN all_zero THEN COALESCE(s_dx, 0.0) + missing * zd * zx ELSE s_dx END AS denominator_covariate_sum_products,
    CASE WHEN all_zero THEN COALESCE(s_cd, 0.0) + missing * zc * zd ELSE s_cd END AS covariate_cross_sum_products,
    CASE WHEN all_zero THEN COALESCE(s_yd, 0.0) + missing * zy * zd ELSE s_yd END AS numerator_denominator_covariate_sum_products,
    CASE WHEN all_zero THEN COALESCE(s_cx, 0.0) + missing * zc * zx ELSE s_cx END AS covariate_denominator_sum_products,
    contaminated_units,
    y_lower AS cap_lower,
    y_upper AS cap_upper,
    x_lower AS denominator_cap_lower,
    x_upper AS denominator_cap_upper,
    c_lower AS covariate_cap_lower,
    c_upper AS covariate_cap_upper,
    d_lower AS denominator_covariate_cap_lower,
    d_upper AS denominator_covariate_cap_upper
  FROM joined
)
SELECT
  *
FROM final
ORDER BY
  metric_key,
  variant_key,
  segment,
  capped;

-- [8] exposure_summary: rows come back to Python
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
  FROM "assignments"
  WHERE
    experiment_key = $experiment_key
    AND unit_id IS NOT NULL
    AND assigned_at >= $start_at
    AND assigned_at <= $as_of
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
    NOT multiple AND NOT variant_key IN ($variants_1, $variants_2) AS unknown
  FROM per_unit
), multiple_ranked AS (
  SELECT
    unit_id,
    ROW_NUMBER() OVER (ORDER BY unit_id) AS unit_rank
  FROM labelled
  WHERE
    multiple
), multiple_sample AS (
  SELECT
    TRUE AS multiple,
    MAX(CASE WHEN unit_rank = 1 THEN unit_id END) AS sample_1,
    MAX(CASE WHEN unit_rank = 2 THEN unit_id END) AS sample_2,
    MAX(CASE WHEN unit_rank = 3 THEN unit_id END) AS sample_3,
    MAX(CASE WHEN unit_rank = 4 THEN unit_id END) AS sample_4,
    MAX(CASE WHEN unit_rank = 5 THEN unit_id END) AS sample_5
  FROM multiple_ranked
  WHERE
    unit_rank <= 5
), groups AS (
  SELECT
    variant_key,
    multiple,
    unknown,
    COUNT(*) AS units,
    MIN(first_exposed_at) AS first_exposed_at,
    MAX(first_exposed_at) AS last_exposed_at
  FROM labelled
  GROUP BY
    variant_key,
    multiple,
    unknown
), final AS (
  SELECT
    g.variant_key,
    g.multiple,
    g.unknown,
    g.units,
    g.first_exposed_at,
    g.last_exposed_at,
    s.sample_1,
    s.sample_2,
    s.sample_3,
    s.sample_4,
    s.sample_5
  FROM groups AS g
  LEFT JOIN multiple_sample AS s
    ON s.multiple = g.multiple
)
SELECT
  *
FROM final
ORDER BY
  variant_key;


-- == 2. data-quality checks ==
-- The suites of expectations/*.json as SQL (Great Expectations has no datasource here).

-- [9] check_assignments: rows come back to Python
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
  FROM "assignments"
  WHERE
    experiment_key = $experiment_key
    AND (
      assigned_at <= $as_of OR assigned_at > $now OR assigned_at IS NULL
    )
)
SELECT
  COUNT(*) AS e0_n,
  COUNT(*) AS e1_n,
  0 AS e1_missing,
  COUNT(*) FILTER(WHERE
    experiment_key IS NULL) AS e1_bad,
  COUNT(*) AS e2_n,
  0 AS e2_missing,
  COUNT(*) FILTER(WHERE
    unit_id IS NULL) AS e2_bad,
  COUNT(*) AS e3_n,
  0 AS e3_missing,
  COUNT(*) FILTER(WHERE
    variant_key IS NULL) AS e3_bad,
  COUNT(*) AS e4_n,
  0 AS e4_missing,
  COUNT(*) FILTER(WHERE
    assigned_at IS NULL) AS e4_bad,
  COUNT(*) AS e5_n,
  COUNT(*) FILTER(WHERE
    variant_key IS NULL) AS e5_missing,
  COUNT(*) FILTER(WHERE
    NOT variant_key IS NULL AND (
      NOT variant_key IN ($e5_set_0, $e5_set_1)
    )) AS e5_bad,
  COUNT(*) AS e6_n,
  COUNT(*) FILTER(WHERE
    assigned_at IS NULL) AS e6_missing,
  COUNT(*) FILTER(WHERE
    NOT assigned_at IS NULL AND (
      assigned_at < $e6_min OR assigned_at > $e6_max
    )) AS e6_bad,
  COUNT(*) AS e7_n,
  COUNT(*) FILTER(WHERE
    assigned_at IS NULL) AS e7_missing,
  COUNT(*) FILTER(WHERE
    NOT assigned_at IS NULL AND (
      assigned_at > $e7_max
    )) AS e7_bad
FROM asset;

-- [10] check_events: rows come back to Python
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
--   event_names_5 = 'session_start'
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
        ORDER BY e.occurred_at
      ) > 1
      THEN COALESCE(e.unit_id, '') || ' | ' || COALESCE(e.event_name, '') || ' | ' || COALESCE(CAST(e.occurred_at AS TEXT), '') || ' | ' || COALESCE(CAST(e.value AS TEXT), '')
    END AS duplicate_of,
    CASE
      WHEN e.value IS NOT NULL AND NOT ABS(e.value) <= $value_limit
      THEN COALESCE(e.unit_id, '') || ' | ' || COALESCE(e.event_name, '') || ' | ' || COALESCE(CAST(e.occurred_at AS TEXT), '') || ' | ' || CAST(e.value AS TEXT)
    END AS out_of_range
  FROM "events" AS e
  WHERE
    e.unit_id IN (
      SELECT
        a.unit_id
      FROM "assignments" AS a
      WHERE
        a.experiment_key = $experiment_key AND a.assigned_at <= $window_end
    )
    AND (
      e.event_name IN ($event_names_1, $event_names_2, $event_names_3, $event_names_4, $event_names_5)
      OR e.event_name IS NULL
    )
    AND (
      (
        e.occurred_at >= $events_from AND e.occurred_at <= $window_end
      )
      OR e.occurred_at > $now
      OR e.occurred_at IS NULL
    )
)
SELECT
  COUNT(*) AS e0_n,
  0 AS e0_missing,
  COUNT(*) FILTER(WHERE
    unit_id IS NULL) AS e0_bad,
  COUNT(*) AS e1_n,
  0 AS e1_missing,
  COUNT(*) FILTER(WHERE
    event_name IS NULL) AS e1_bad,
  COUNT(*) AS e2_n,
  0 AS e2_missing,
  COUNT(*) FILTER(WHERE
    occurred_at IS NULL) AS e2_bad,
  COUNT(*) AS e3_n,
  COUNT(*) FILTER(WHERE
    occurred_at IS NULL) AS e3_missing,
  COUNT(*) FILTER(WHERE
    NOT occurred_at IS NULL AND (
      occurred_at > $e3_max
    )) AS e3_bad,
  COUNT(*) FILTER(WHERE
    event_name IN ($e4_cond_0, $e4_cond_1)) AS e4_n,
  0 AS e4_missing,
  COUNT(*) FILTER(WHERE
    event_name IN ($e4_cond_0, $e4_cond_1) AND value IS NULL) AS e4_bad,
  COUNT(*) FILTER(WHERE
    event_name IN ($e5_cond_0, $e5_cond_1)) AS e5_n,
  0 AS e5_missing,
  COUNT(*) FILTER(WHERE
    event_name IN ($e5_cond_0, $e5_cond_1) AND NOT out_of_range IS NULL) AS e5_bad,
  COUNT(*) AS e6_n,
  0 AS e6_missing,
  COUNT(*) FILTER(WHERE
    NOT duplicate_of IS NULL) AS e6_bad
FROM asset;

-- [11] check_variant_stats: rows come back to Python
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
    FROM "assignments"
    WHERE
      experiment_key = $experiment_key
      AND unit_id IS NOT NULL
      AND assigned_at >= $start_at
      AND assigned_at <= $window_end
    GROUP BY
      unit_id
  ) AS per_unit
  WHERE
    variant_count = 1 AND variant_key IN ($variants_1, $variants_2)
  GROUP BY
    variant_key
)
SELECT
  COUNT(*) FILTER(WHERE
    variant_key = $e0_want_0) AS e0_has_0,
  COUNT(*) FILTER(WHERE
    variant_key = $e0_want_1) AS e0_has_1
FROM asset;
