-- Promotions respect people (issue 11, item 7). Runs with search_path set to the abflow schema.
--
-- * A manual promote or rollback pins experiment_config: scheduled runs and backfills never
--   change a pinned config; `abflow unpin` hands control back to the decision rules. The pin is
--   on the config row (apps may read it; columns are only added, never renamed or removed).
-- * promotions records pins and unpins, and the config version each row produced, so every
--   version step of a config has exactly one audit row.
-- * The latest_* views skip failed runs: a failed newer run never hides results from apps (it
--   stays in analysis_runs and in the report).

alter table experiment_config
    add column if not exists pinned boolean not null default false,
    add column if not exists pinned_by text,
    add column if not exists pinned_reason text,
    add column if not exists pinned_at timestamptz;
comment on column experiment_config.pinned is
    'true after a manual promote or rollback: analysis runs and backfills never change this config '
    'until `abflow unpin` hands it back to the decision rules.';
comment on column experiment_config.pinned_by is 'Who pinned the config (the actor of the pin).';
comment on column experiment_config.pinned_reason is 'Why the config was pinned, as given.';
comment on column experiment_config.pinned_at is 'When the config was pinned.';

alter table promotions drop constraint if exists promotions_action_check;
alter table promotions add constraint promotions_action_check
    check (action in ('promote', 'rollback', 'reweight', 'pin', 'unpin'));
alter table promotions add column if not exists version integer;
-- Rows written before this migration: the version they produced is the one they replaced + 1.
update promotions set version = (previous_config ->> 'version')::integer + 1
where version is null and previous_config ? 'version';
comment on column promotions.version is
    'The experiment_config version this row produced (each version step has one row).';
comment on column promotions.action is
    'promote (variant override), rollback (undo the newest promotion still in force; the bottom '
    'is the weighted split), reweight (bandit weights), pin (a person froze the current config), '
    'unpin (control handed back to the decision rules). A manual promote or rollback also pins.';
comment on table promotions is
    'Append-only audit of every change of experiment_config: promotions, rollbacks, bandit '
    'reweights, pins and unpins.';
create index if not exists promotions_experiment_idx on promotions (experiment_key, id);

-- Same columns as before (create or replace keeps the grants and view options).
create or replace view latest_runs as
select distinct on (experiment_key) *
from analysis_runs
where status <> 'failed'
order by experiment_key, as_of desc, started_at desc;
comment on view latest_runs is
    'The newest analysis run per experiment that did not fail (failed runs stay in analysis_runs).';

create or replace view latest_insights as
select i.*
from insights as i
join latest_runs as r on r.run_id = i.run_id;
comment on view latest_insights is
    'Insights of the newest run per experiment that did not fail.';

create or replace view latest_recommendations as
select rec.*, r.as_of, r.status as run_status
from recommendations as rec
join latest_runs as r on r.run_id = rec.run_id;
comment on view latest_recommendations is
    'Recommendation of the newest run per experiment that did not fail.';

-- The views keep reading their base tables with the owner's rights (see 003_roles.sql).
do $$
begin
    if current_setting('server_version_num')::int >= 150000 then
        execute format('alter view %I.latest_runs set (security_invoker = false)', current_schema());
        execute format('alter view %I.latest_insights set (security_invoker = false)', current_schema());
        execute format(
            'alter view %I.latest_recommendations set (security_invoker = false)', current_schema()
        );
    end if;
end
$$;
