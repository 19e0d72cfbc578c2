-- Incremental refresh (abflow.warehouse.incremental): per-unit mergeable aggregates materialised
-- per experiment, so a daily run reads only the events since the last refresh (plus a
-- late-arrival lookback) instead of the whole history. Runs with search_path set to the schema.

create table if not exists unit_metric_partials (
    experiment_key text not null,
    unit_id text not null,
    metric_key text not null,
    num_count bigint not null default 0,
    num_value_count bigint not null default 0,
    num_sum double precision not null default 0,
    num_max double precision,
    den_count bigint not null default 0,
    den_value_count bigint not null default 0,
    den_sum double precision not null default 0,
    den_max double precision,
    pre_count bigint not null default 0,
    pre_value_count bigint not null default 0,
    pre_sum double precision not null default 0,
    pre_max double precision,
    contaminated_count bigint not null default 0,
    -- unit before metric: a unit whose first exposure moved is deleted with one index range
    primary key (experiment_key, unit_id, metric_key)
);
comment on table unit_metric_partials is
    'Incremental refresh: per experiment, unit and metric, mergeable aggregates (count, count of '
    'values, sum, max) of the unit''s events before refresh_state.sealed_before, classified '
    'against the unit''s first exposure: num_*/den_* in the metric window, pre_* in the CUPED '
    'lookback, contaminated_count between start and exposure. Mean = sum / value_count. Later '
    'events are re-read by every refresh and sealed in here once older than the lookback.';

create table if not exists unit_exposures_seen (
    experiment_key text not null,
    unit_id text not null,
    first_exposed_at timestamptz not null,
    primary key (experiment_key, unit_id)
);
comment on table unit_exposures_seen is
    'Incremental refresh: the analysed units and their first exposure at the last refresh; a unit '
    'that is new or whose first exposure moved has its partials recomputed from all its events.';

create table if not exists refresh_state (
    experiment_key text primary key,
    watermark timestamptz not null,
    sealed_before timestamptz not null,
    definition_hash text not null,
    mode text not null check (mode in ('full', 'incremental')),
    refreshed_at timestamptz not null default now()
);
comment on table refresh_state is
    'Incremental refresh: per experiment, the as_of of the last refresh (watermark); '
    'sealed_before, the UTC midnight before watermark minus the late-arrival lookback: '
    'unit_metric_partials holds the events before it, the next refresh re-reads the events from '
    'it; the hash of the definition and sources the partials were computed for; and whether the '
    'last refresh was full or incremental.';
