-- abflow schema, version 12 (branch metrics): the incremental partials keep the pre-exposure
-- denominator of ratio metrics (ratio CUPED, issue 14 item 4) like the numerator's pre_* columns.
-- abflow.warehouse.incremental bumps PARTIALS_VERSION, so every experiment refreshes in full once.

alter table unit_metric_partials add column if not exists den_pre_count bigint default 0;
alter table unit_metric_partials add column if not exists den_pre_value_count bigint default 0;
alter table unit_metric_partials add column if not exists den_pre_sum double precision default 0;
alter table unit_metric_partials add column if not exists den_pre_max double precision;
comment on column unit_metric_partials.den_pre_count is
    'Ratio CUPED: denominator events in the lookback before exposure (den_pre_* as pre_*).';
