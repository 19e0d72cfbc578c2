-- Building blocks of the metrics' event property filters (abflow/warehouse/plan.py assembles
-- them into the predicate that replaces abflow_event_filter(...) in metric_stats.sql).
-- 'PROPERTY' is replaced by the filter's property name (a validated definition key, rendered
-- as a literal JSON path in each dialect's syntax) and e.properties by the events column.
-- Every compared value is a bound placeholder.

-- name: text_value
-- The property as text: JSON strings without quotes, numbers and true/false as written,
-- NULL when the property is missing or JSON null.
select e.properties ->> 'PROPERTY' from source_events as e

-- name: number_value
-- The property as a number, NULL when its text is not a plain decimal number: a guard, not a
-- cast that fails, so one malformed event cannot fail the run (it simply never matches).
select
    case
        when e.properties ->> 'PROPERTY' ~ '^-?[0-9]+([.][0-9]+)?([eE][-+]?[0-9]+)?$'
            then cast(e.properties ->> 'PROPERTY' as double precision)
    end
from source_events as e
