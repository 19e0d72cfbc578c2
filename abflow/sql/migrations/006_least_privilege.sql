-- Least privilege that holds (SPEC §3.3 Roles): an audit nobody rewrites, a role for dashboards,
-- and config versions that only move one step at a time. Runs with search_path set to the abflow
-- schema. The grants themselves live in sql/privileges.sql, which `abflow migrate` re-applies
-- after every migration (so it also covers objects a later migration recreates).
--
-- Written to work whether or not 005_promotion_pins ran before it: nothing here depends on the
-- pin columns, and promotions.action is left to its check constraint (pin/unpin included).

-- abflow_reader: BI and Grafana. A NOLOGIN group like abflow_app/abflow_writer (003_roles.sql);
-- created only if missing and if this user may create roles (managed warehouses: a DBA creates it
-- and the next `abflow migrate` applies its grants).
do $$
begin
    if exists (select from pg_roles where rolname = 'abflow_reader') then
        return;
    end if;
    if not exists (
        select from pg_roles where rolname = current_user and (rolsuper or rolcreaterole)
    ) then
        raise notice 'abflow: role abflow_reader does not exist and % may not create roles; skipping its grants', current_user;
        return;
    end if;
    begin
        create role abflow_reader nologin;
        comment on role abflow_reader is
            'abflow dashboards and BI: read every result table and view; nothing raw, no writes.';
    exception when duplicate_object or unique_violation then
        null;  -- created concurrently by the migration of another schema: same outcome
    end;
end
$$;

-- promotions: who did it is the database login, recorded by the database ----------------------
-- `actor` keeps its SPEC meaning (`auto`, a web token's name, or what an operator passed with
-- --actor; the login when nothing was passed). `db_user` is session_user at insert time: set by
-- the trigger below whatever the caller sends, and the writer cannot insert it, update it or
-- delete the row.
alter table promotions add column if not exists db_user text;
-- rows written before this migration have no authenticated login on record
update promotions set db_user = '(unknown: before 006)' where db_user is null;
alter table promotions alter column db_user set default session_user;
alter table promotions alter column db_user set not null;
comment on column promotions.db_user is
    'Database login (session_user) that wrote the row; set by the database, not by the caller.';
comment on column promotions.actor is
    'Who asked: auto (the pipeline), a web token''s name, or the operator''s --actor; '
    'the login when none was given. db_user is the authenticated identity.';

create or replace function promotions_stamp() returns trigger
language plpgsql
set search_path = pg_catalog
as $$
begin
    new.db_user := session_user;
    new.at := now();
    new.actor := coalesce(nullif(btrim(new.actor), ''), session_user);
    return new;
end;
$$;
comment on function promotions_stamp() is
    'promotions: db_user := session_user, at := now(), an empty actor becomes the login.';

-- Append-only for everyone, the owner included: history changes only by visible DDL. One
-- exception: a migration (abflow.warehouse.migrate sets abflow.migration while it runs one) may
-- UPDATE, to back-fill a column it adds to the audit; nothing ever deletes. Setting the variable
-- by hand gains nothing to a login without UPDATE privilege (abflow_writer has none).
create or replace function refuse_history_change() returns trigger
language plpgsql
set search_path = pg_catalog
as $$
begin
    if tg_op = 'UPDATE' and coalesce(current_setting('abflow.migration', true), '') <> '' then
        return new;
    end if;
    raise exception '%.% is append-only: % refused', tg_table_schema, tg_table_name, tg_op
        using errcode = 'insufficient_privilege';
end;
$$;
comment on function refuse_history_change() is
    'Raises on UPDATE, DELETE and TRUNCATE of append-only tables (promotions, schema_migrations).';

drop trigger if exists promotions_stamp on promotions;
create trigger promotions_stamp before insert on promotions
    for each row execute function promotions_stamp();
drop trigger if exists promotions_append_only on promotions;
create trigger promotions_append_only before update or delete on promotions
    for each row execute function refuse_history_change();
drop trigger if exists promotions_no_truncate on promotions;
create trigger promotions_no_truncate before truncate on promotions
    for each statement execute function refuse_history_change();

drop trigger if exists schema_migrations_append_only on schema_migrations;
create trigger schema_migrations_append_only before update or delete on schema_migrations
    for each row execute function refuse_history_change();
drop trigger if exists schema_migrations_no_truncate on schema_migrations;
create trigger schema_migrations_no_truncate before truncate on schema_migrations
    for each statement execute function refuse_history_change();

-- experiment_config: versions move one step at a time ----------------------------------------
-- A change to what apps read (status, variants, promoted variant or config) must come with
-- version + 1, and a version never jumps or goes back, so concurrent writers cannot leave a gap
-- or reuse a number. Other columns (updated_at, pins) may change with or without a step.
create or replace function experiment_config_version_step() returns trigger
language plpgsql
set search_path = pg_catalog
as $$
begin
    if new.version is distinct from old.version and new.version is distinct from old.version + 1 then
        raise exception 'experiment_config %: version may only move from % to %, not to %',
            old.experiment_key, old.version, old.version + 1, new.version
            using errcode = 'check_violation';
    end if;
    if (new.status, new.variants, new.promoted_variant_key, new.promoted_config)
        is distinct from (old.status, old.variants, old.promoted_variant_key, old.promoted_config)
        and new.version is distinct from old.version + 1 then
        raise exception 'experiment_config %: a change apps can see needs version % -> %',
            old.experiment_key, old.version, old.version + 1
            using errcode = 'check_violation';
    end if;
    return new;
end;
$$;
comment on function experiment_config_version_step() is
    'experiment_config: what apps read changes only with version + 1; versions never jump.';

drop trigger if exists experiment_config_version_step on experiment_config;
create trigger experiment_config_version_step before update on experiment_config
    for each row execute function experiment_config_version_step();
