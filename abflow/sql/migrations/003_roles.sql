-- Least-privilege roles for applications and the pipeline (SPEC §3.3, §3.4).
-- Runs with search_path set to the abflow schema; grants use current_schema() so the same file
-- serves any schema name.
--
--   abflow_app     what applications need: read experiment_config and the latest_* views, call
--                  assign_variant(text, text). Nothing on raw assignments/events or result tables.
--   abflow_writer  what the pipeline needs: select/insert/update/delete on every table of the
--                  schema, usage on its sequences, TEMP on the database (extraction builds
--                  temporary unit tables).
--
-- Both are NOLOGIN group roles. An operator gives a service its own login as a member, e.g.
--   create role app_login login password '…' in role abflow_app;
--   create role pipeline_login login password '…' in role abflow_writer;
-- and points the app (search_path = the abflow schema) or ABFLOW_DATABASE_URL at it. Migrations
-- themselves keep running as the schema owner.
--
-- Roles are cluster-wide, so they are created only if missing (another database or schema may
-- have created them already). A migrating user without CREATEROLE cannot create them: the
-- migration then only raises a NOTICE for the missing role and skips its grants, so `migrate`
-- still works on managed warehouses; rerunning the DO block below after a DBA has created the
-- roles applies the grants.

do $$
declare
    r text;
begin
    foreach r in array array['abflow_app', 'abflow_writer'] loop
        if exists (select from pg_roles where rolname = r) then
            continue;
        end if;
        if not exists (
            select from pg_roles where rolname = current_user and (rolsuper or rolcreaterole)
        ) then
            raise notice 'abflow: role % does not exist and % may not create roles; skipping its grants', r, current_user;
            continue;
        end if;
        begin
            execute format('create role %I nologin', r);
            execute format(
                'comment on role %I is %L',
                r,
                case r
                    when 'abflow_app' then
                        'abflow applications: read experiment_config and latest_* views, call assign_variant.'
                    else
                        'abflow pipeline: read and write the abflow tables, use temporary tables.'
                end
            );
        exception when duplicate_object or unique_violation then
            -- A concurrent migration of another schema created it first: same outcome.
            null;
        end;
    end loop;
end
$$;

do $$
declare
    s text := current_schema();
    have_app boolean := exists (select from pg_roles where rolname = 'abflow_app');
    have_writer boolean := exists (select from pg_roles where rolname = 'abflow_writer');
begin
    -- Only granted roles may assign: PUBLIC's default EXECUTE would let any login read configs.
    execute format('revoke all on function %I.assign_variant(text, text) from public', s);
    -- Functions added by later migrations start closed as well (objects created by this user).
    execute format('alter default privileges in schema %I revoke execute on functions from public', s);

    -- The latest_* views read their base tables with the rights of the view owner (the migrating
    -- user); that is what lets abflow_app read them without SELECT on insights/recommendations/
    -- analysis_runs. Pin it, so a security_invoker default can never break the app grants.
    if current_setting('server_version_num')::int >= 150000 then
        execute format('alter view %I.latest_runs set (security_invoker = false)', s);
        execute format('alter view %I.latest_insights set (security_invoker = false)', s);
        execute format('alter view %I.latest_recommendations set (security_invoker = false)', s);
    end if;

    if have_app then
        execute format('grant usage on schema %I to abflow_app', s);
        execute format(
            'grant select on %I.experiment_config, %I.latest_insights, %I.latest_recommendations'
            ' to abflow_app',
            s, s, s
        );
        execute format('grant execute on function %I.assign_variant(text, text) to abflow_app', s);
    end if;

    if have_writer then
        execute format('grant usage on schema %I to abflow_writer', s);
        execute format(
            'grant select, insert, update, delete on all tables in schema %I to abflow_writer', s
        );
        execute format('grant usage on all sequences in schema %I to abflow_writer', s);
        execute format(
            'grant execute on function %I.assign_variant(text, text) to abflow_writer', s
        );
        -- Tables, sequences and functions of later migrations reach the pipeline without a new
        -- grant (default privileges of the migrating user in this schema).
        execute format(
            'alter default privileges in schema %I'
            ' grant select, insert, update, delete on tables to abflow_writer',
            s
        );
        execute format(
            'alter default privileges in schema %I grant usage on sequences to abflow_writer', s
        );
        execute format(
            'alter default privileges in schema %I grant execute on functions to abflow_writer', s
        );
        begin
            execute format('grant temporary on database %I to abflow_writer', current_database());
        exception when insufficient_privilege then
            -- Not the database owner: PUBLIC normally holds TEMP anyway; say so instead of failing.
            raise notice 'abflow: cannot grant TEMP on database % to abflow_writer', current_database();
        end;
    end if;
end
$$;
