-- abflow warehouse schema, version 1: raw inputs, definitions and result tables (SPEC §3).
-- Runs with search_path set to the abflow schema, so names are unqualified.

-- raw inputs ---------------------------------------------------------------
create table if not exists assignments (
    experiment_key text not null,
    unit_id text not null,
    variant_key text not null,
    assigned_at timestamptz not null,
    attributes jsonb
);
comment on table assignments is
    'Raw exposures written by applications: one row per exposure, repeats allowed, the first counts.';
create index if not exists assignments_experiment_unit_idx
    on assignments (experiment_key, unit_id, assigned_at);

create table if not exists events (
    unit_id text not null,
    event_name text not null,
    value double precision,
    occurred_at timestamptz not null,
    properties jsonb
);
comment on table events is
    'Raw outcome events written by applications: one row per event, value is optional.';
create index if not exists events_unit_time_idx on events (unit_id, occurred_at);
create index if not exists events_time_idx on events (occurred_at);

-- definitions --------------------------------------------------------------
create table if not exists experiments (
    experiment_key text primary key,
    name text not null,
    status text not null check (status in ('draft', 'running', 'stopped', 'concluded')),
    start_at timestamptz not null,
    end_at timestamptz,
    definition jsonb not null,
    updated_at timestamptz not null default now()
);
comment on table experiments is
    'Experiment definitions upserted from YAML by `abflow experiments apply`; flows read this table.';

-- results ------------------------------------------------------------------
create table if not exists analysis_runs (
    run_id uuid primary key,
    experiment_key text not null,
    as_of timestamptz not null,
    flow_run_id text,
    started_at timestamptz not null,
    finished_at timestamptz,
    status text not null check (status in ('succeeded', 'failed', 'unhealthy', 'skipped')),
    message text,
    units bigint,
    excluded_units bigint,
    days_since_start double precision,
    unique (experiment_key, as_of)
);
comment on table analysis_runs is
    'One row per experiment per analysis run; (experiment_key, as_of) is unique so reruns replace.';

create table if not exists variant_stats (
    run_id uuid not null references analysis_runs (run_id) on delete cascade,
    experiment_key text not null,
    metric_key text not null,
    variant_key text not null,
    segment text not null default 'all',
    units bigint not null,
    mean double precision,
    variance double precision,
    sum double precision not null,
    sum_squares double precision not null,
    denominator_sum double precision,
    denominator_sum_squares double precision,
    sum_products double precision,
    covariate_sum double precision,
    covariate_sum_squares double precision,
    covariate_sum_products double precision,
    primary key (run_id, metric_key, variant_key, segment)
);
comment on table variant_stats is
    'Sufficient statistics per run, metric, variant and segment, computed in the warehouse.';

create table if not exists insights (
    run_id uuid not null references analysis_runs (run_id) on delete cascade,
    experiment_key text not null,
    as_of timestamptz not null,
    metric_key text not null,
    metric_role text not null,
    variant_key text not null,
    control_key text not null,
    segment text not null default 'all',
    method text not null,
    control_units bigint not null,
    variant_units bigint not null,
    control_mean double precision not null,
    variant_mean double precision not null,
    abs_lift double precision not null,
    abs_ci_low double precision not null,
    abs_ci_high double precision not null,
    rel_lift double precision not null,
    rel_ci_low double precision not null,
    rel_ci_high double precision not null,
    p_value double precision not null,
    p_value_adjusted double precision not null,
    significant boolean not null,
    chance_to_beat_control double precision not null,
    expected_loss double precision not null,
    error text,
    primary key (run_id, metric_key, variant_key, segment)
);
comment on table insights is
    'Treatment-vs-control comparison per run, metric, treatment and segment (lifts, CIs, p-values).';

create table if not exists health_checks (
    run_id uuid not null references analysis_runs (run_id) on delete cascade,
    experiment_key text not null,
    check_name text not null,
    severity text not null check (severity in ('critical', 'warning')),
    passed boolean not null,
    observed double precision,
    threshold double precision,
    details jsonb not null default '{}'::jsonb,
    primary key (run_id, check_name)
);
comment on table health_checks is
    'Data-quality expectations and experiment health checks per run; critical failures block decisions.';

create table if not exists recommendations (
    run_id uuid primary key references analysis_runs (run_id) on delete cascade,
    experiment_key text not null,
    decision text not null
        check (decision in ('ship', 'keep_running', 'stop_inconclusive', 'rollback', 'investigate')),
    variant_key text,
    rationale text not null,
    days_remaining double precision,
    details jsonb not null default '{}'::jsonb,
    created_at timestamptz not null default now()
);
comment on table recommendations is
    'One decision per experiment and run, with a plain-English rationale.';

create table if not exists experiment_config (
    experiment_key text primary key,
    status text not null,
    variants jsonb not null,
    promoted_variant_key text,
    promoted_config jsonb,
    version integer not null default 1,
    updated_at timestamptz not null default now()
);
comment on table experiment_config is
    'What applications read: variants with weights and configs, and any promoted override.';

create table if not exists promotions (
    id bigserial primary key,
    experiment_key text not null,
    variant_key text,
    action text not null check (action in ('promote', 'rollback', 'reweight')),
    actor text not null,
    run_id uuid,
    reason text,
    previous_config jsonb,
    at timestamptz not null default now()
);
comment on table promotions is
    'Append-only audit of promotions, rollbacks and bandit reweights of experiment_config.';

create or replace view latest_runs as
select distinct on (experiment_key) *
from analysis_runs
order by experiment_key, as_of desc, started_at desc;
comment on view latest_runs is 'The newest analysis run per experiment.';

create or replace view latest_insights as
select i.*
from insights as i
join latest_runs as r on r.run_id = i.run_id;
comment on view latest_insights is 'Insights of the newest run per experiment.';

create or replace view latest_recommendations as
select rec.*, r.as_of, r.status as run_status
from recommendations as rec
join latest_runs as r on r.run_id = rec.run_id;
comment on view latest_recommendations is 'Recommendation of the newest run per experiment.';
