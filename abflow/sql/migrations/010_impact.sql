-- abflow schema, version 10: scaled impact per insight (issue 14 item 8).
-- The absolute effect scaled to the whole eligible population per day, as GrowthBook's "scaled
-- impact": units (or, for ratios, denominator events) per day across all arms x the difference.

alter table insights add column if not exists impact_per_day double precision;
alter table insights add column if not exists impact_ci_low double precision;
alter table insights add column if not exists impact_ci_high double precision;
comment on column insights.impact_per_day is
    'Absolute effect x eligible units (ratio metrics: denominator events) per day, all arms; x30 for a month.';
comment on column insights.impact_ci_low is 'Lower end of impact_per_day at the row''s interval level.';
comment on column insights.impact_ci_high is 'Upper end of impact_per_day at the row''s interval level.';
