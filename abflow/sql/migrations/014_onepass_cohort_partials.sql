-- abflow schema, version 14 (branch onepass): the incremental partials keep each unit's
-- novelty/primacy cohorts (days 0-6, 7-13, 14-20, 21+ since first exposure), so that on an
-- incremental refresh too the exposure-age statistics come from the per-unit values, not from a
-- second scan of all events. Per cohort k the post-exposure numerator and denominator
-- aggregates (ck_num_* / ck_den_*: count, count of values, sum, max), and c0_rows counts
-- cohort 0's rows, which include the events after the start but before exposure (they make the
-- unit's cohort-0 row).
-- abflow.warehouse.incremental bumps PARTIALS_VERSION, so every experiment refreshes in full once.

alter table unit_metric_partials add column if not exists c0_rows bigint default 0;
alter table unit_metric_partials add column if not exists c0_num_count bigint default 0;
alter table unit_metric_partials add column if not exists c0_num_value_count bigint default 0;
alter table unit_metric_partials add column if not exists c0_num_sum double precision default 0;
alter table unit_metric_partials add column if not exists c0_num_max double precision;
alter table unit_metric_partials add column if not exists c0_den_count bigint default 0;
alter table unit_metric_partials add column if not exists c0_den_value_count bigint default 0;
alter table unit_metric_partials add column if not exists c0_den_sum double precision default 0;
alter table unit_metric_partials add column if not exists c0_den_max double precision;
alter table unit_metric_partials add column if not exists c1_num_count bigint default 0;
alter table unit_metric_partials add column if not exists c1_num_value_count bigint default 0;
alter table unit_metric_partials add column if not exists c1_num_sum double precision default 0;
alter table unit_metric_partials add column if not exists c1_num_max double precision;
alter table unit_metric_partials add column if not exists c1_den_count bigint default 0;
alter table unit_metric_partials add column if not exists c1_den_value_count bigint default 0;
alter table unit_metric_partials add column if not exists c1_den_sum double precision default 0;
alter table unit_metric_partials add column if not exists c1_den_max double precision;
alter table unit_metric_partials add column if not exists c2_num_count bigint default 0;
alter table unit_metric_partials add column if not exists c2_num_value_count bigint default 0;
alter table unit_metric_partials add column if not exists c2_num_sum double precision default 0;
alter table unit_metric_partials add column if not exists c2_num_max double precision;
alter table unit_metric_partials add column if not exists c2_den_count bigint default 0;
alter table unit_metric_partials add column if not exists c2_den_value_count bigint default 0;
alter table unit_metric_partials add column if not exists c2_den_sum double precision default 0;
alter table unit_metric_partials add column if not exists c2_den_max double precision;
alter table unit_metric_partials add column if not exists c3_num_count bigint default 0;
alter table unit_metric_partials add column if not exists c3_num_value_count bigint default 0;
alter table unit_metric_partials add column if not exists c3_num_sum double precision default 0;
alter table unit_metric_partials add column if not exists c3_num_max double precision;
alter table unit_metric_partials add column if not exists c3_den_count bigint default 0;
alter table unit_metric_partials add column if not exists c3_den_value_count bigint default 0;
alter table unit_metric_partials add column if not exists c3_den_sum double precision default 0;
alter table unit_metric_partials add column if not exists c3_den_max double precision;
comment on column unit_metric_partials.c0_rows is
    'Exposure-age cohort 0: rows of days 0-6 since exposure and of the events after the start before it.';
comment on column unit_metric_partials.c0_num_count is
    'Exposure-age cohorts: ck_num_* / ck_den_* aggregate the events of days 0-6, 7-13, 14-20, 21+ (k = 0..3) since exposure like num_* / den_*.';
