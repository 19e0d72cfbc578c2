-- abflow schema, version 13: quantile metrics and novelty/primacy cohorts (issue 14 items 2, 9).

-- Quantile metrics hold the per-arm quantile in variant_stats.mean (SPEC §3.2); beside it the
-- order statistics at the 95% rank bounds and the number of observations they were taken over.
alter table variant_stats add column if not exists quantile_lower double precision;
alter table variant_stats add column if not exists quantile_upper double precision;
alter table variant_stats add column if not exists quantile_n bigint;
comment on column variant_stats.quantile_lower is
    'Quantile metrics: the quantile at the lower 95% rank bound (Yao, Li & Lu 2024); mean holds the quantile.';
comment on column variant_stats.quantile_upper is
    'Quantile metrics: the quantile at the upper 95% rank bound (Yao, Li & Lu 2024).';
comment on column variant_stats.quantile_n is
    'Quantile metrics: observations the quantile is taken over (units, or events for level: event).';

create table if not exists lift_by_exposure_age (
    run_id uuid not null references analysis_runs (run_id) on delete cascade,
    experiment_key text not null,
    metric_key text not null,
    variant_key text not null,
    control_key text not null,
    cohort text not null,
    first_day integer not null,
    last_day integer,
    control_units bigint not null,
    variant_units bigint not null,
    control_mean double precision,
    variant_mean double precision,
    rel_lift double precision,
    rel_ci_low double precision,
    rel_ci_high double precision,
    abs_lift double precision,
    p_value double precision,
    error text,
    primary key (run_id, metric_key, variant_key, cohort)
);
comment on table lift_by_exposure_age is
    'Novelty and primacy: each metric''s lift by days since the unit''s first exposure (cohorts 0-6, 7-13, 14-20, 21+), per run.';
comment on column lift_by_exposure_age.cohort is
    'Days since first exposure: 0-6, 7-13, 14-20 or 21+; a unit counts once it has reached the cohort''s first day.';
comment on column lift_by_exposure_age.rel_lift is
    'Relative lift of the variant over control from the events in the cohort''s days (Welch, fixed horizon, 95%).';
