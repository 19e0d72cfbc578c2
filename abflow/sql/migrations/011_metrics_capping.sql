-- abflow schema, version 11 (branch metrics): capping, ratio CUPED (issue 14 items 1 and 4).
-- variant_stats: a capped metric's mean, variance and sums are of the capped per-unit values;
-- the caps used and the raw mean/variance sit beside them. Ratio CUPED adds the pre-exposure
-- denominator's sums and its cross products (gbstats RegressionAdjustedRatioStatistic).
-- insights: the same comparison on the raw values, shown beside a capped metric's result.

alter table variant_stats add column if not exists denominator_covariate_sum double precision;
alter table variant_stats add column if not exists denominator_covariate_sum_squares double precision;
alter table variant_stats add column if not exists denominator_covariate_sum_products double precision;
alter table variant_stats add column if not exists covariate_cross_sum_products double precision;
alter table variant_stats add column if not exists numerator_denominator_covariate_sum_products double precision;
alter table variant_stats add column if not exists covariate_denominator_sum_products double precision;
alter table variant_stats add column if not exists capped boolean not null default false;
alter table variant_stats add column if not exists cap_lower double precision;
alter table variant_stats add column if not exists cap_upper double precision;
alter table variant_stats add column if not exists denominator_cap_lower double precision;
alter table variant_stats add column if not exists denominator_cap_upper double precision;
alter table variant_stats add column if not exists covariate_cap_lower double precision;
alter table variant_stats add column if not exists covariate_cap_upper double precision;
alter table variant_stats add column if not exists denominator_covariate_cap_lower double precision;
alter table variant_stats add column if not exists denominator_covariate_cap_upper double precision;
alter table variant_stats add column if not exists uncapped_mean double precision;
alter table variant_stats add column if not exists uncapped_variance double precision;

comment on column variant_stats.denominator_covariate_sum is
    'Ratio CUPED: sum of the per-unit pre-exposure denominator d.';
comment on column variant_stats.denominator_covariate_sum_squares is 'Ratio CUPED: sum of d squared.';
comment on column variant_stats.denominator_covariate_sum_products is
    'Ratio CUPED: sum of post denominator x times d.';
comment on column variant_stats.covariate_cross_sum_products is
    'Ratio CUPED: sum of pre numerator (covariate) times d.';
comment on column variant_stats.numerator_denominator_covariate_sum_products is
    'Ratio CUPED: sum of post numerator y times d.';
comment on column variant_stats.covariate_denominator_sum_products is
    'Ratio CUPED: sum of pre numerator (covariate) times post denominator x.';
comment on column variant_stats.capped is
    'True when the metric is capped: mean, variance and sums are of the capped per-unit values.';
comment on column variant_stats.cap_lower is
    'Lower cap applied to the per-unit value (ratios: numerator); percentile caps pooled over all arms.';
comment on column variant_stats.cap_upper is
    'Upper cap applied to the per-unit value (ratios: numerator); percentile caps pooled over all arms.';
comment on column variant_stats.denominator_cap_lower is 'Lower cap of a ratio''s per-unit denominator.';
comment on column variant_stats.denominator_cap_upper is 'Upper cap of a ratio''s per-unit denominator.';
comment on column variant_stats.covariate_cap_lower is
    'Lower cap of the CUPED covariate (its own percentile over the pre-exposure values).';
comment on column variant_stats.covariate_cap_upper is
    'Upper cap of the CUPED covariate (its own percentile over the pre-exposure values).';
comment on column variant_stats.denominator_covariate_cap_lower is
    'Lower cap of the pre-exposure ratio denominator.';
comment on column variant_stats.denominator_covariate_cap_upper is
    'Upper cap of the pre-exposure ratio denominator.';
comment on column variant_stats.uncapped_mean is 'Capped metrics: the mean of the raw (uncapped) values.';
comment on column variant_stats.uncapped_variance is
    'Capped metrics: the variance of the raw (uncapped) values.';

alter table insights add column if not exists uncapped_control_mean double precision;
alter table insights add column if not exists uncapped_variant_mean double precision;
alter table insights add column if not exists uncapped_rel_lift double precision;
alter table insights add column if not exists uncapped_rel_ci_low double precision;
alter table insights add column if not exists uncapped_rel_ci_high double precision;
alter table insights add column if not exists uncapped_p_value double precision;
comment on column insights.uncapped_control_mean is
    'Capped metrics: control mean of the raw values (the row''s other columns are capped).';
comment on column insights.uncapped_variant_mean is 'Capped metrics: variant mean of the raw values.';
comment on column insights.uncapped_rel_lift is 'Capped metrics: relative lift on the raw values.';
comment on column insights.uncapped_rel_ci_low is
    'Capped metrics: lower end of the raw relative lift''s interval (no multiplicity adjustment).';
comment on column insights.uncapped_rel_ci_high is
    'Capped metrics: upper end of the raw relative lift''s interval (no multiplicity adjustment).';
comment on column insights.uncapped_p_value is
    'Capped metrics: p-value on the raw values (no multiplicity adjustment; never used by decisions).';
