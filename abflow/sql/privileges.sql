-- Grants of the abflow roles on this schema (SPEC §3.3 Roles, SECURITY.md), re-applied by
-- `abflow migrate` after every migration: idempotent, declarative (what is not listed here is
-- revoked from abflow_app and abflow_reader), and it repairs what a later migration loses by
-- recreating an object. Runs as the schema owner with search_path set to the schema.
--
--   role           tables                                     views          functions
--   abflow_writer  results, definitions, config, incremental:  select         assign_variant
--                  select/insert/update/delete;
--                  assignments, events, schema_migrations: select only;
--                  promotions: select, insert (not id, at, db_user);
--                  web_tokens: select, insert, update (revoked tokens stay on record);
--                  web_audit: select, insert (append-only log of web writes)
--   abflow_reader  select on the result tables, definitions,  select         assign_variant
--                  config, promotions, schema_migrations
--   abflow_app     select on experiment_config               latest_insights, assign_variant
--                                                            latest_recommendations
--
-- Functions are closed to PUBLIC: existing ones here, and (default privileges of the migrating
-- user, which must be global: a per-schema default cannot take away PostgreSQL's built-in
-- EXECUTE for PUBLIC) every function it creates later.

alter default privileges revoke execute on functions from public;

do $$
declare
    s text := current_schema();
    role text;
    rel record;
    -- what each read-only role may select; the writer selects everything
    readable jsonb := jsonb_build_object(
        'abflow_reader', jsonb_build_array(
            'analysis_runs', 'variant_stats', 'insights', 'health_checks', 'recommendations',
            'lift_by_exposure_age',
            'experiment_config', 'experiments', 'promotions', 'schema_migrations',
            'latest_runs', 'latest_insights', 'latest_recommendations'),
        'abflow_app', jsonb_build_array(
            'experiment_config', 'latest_insights', 'latest_recommendations'));
    -- tables the writer reads or appends to but never updates or deletes
    writer_read_only text[] := array['assignments', 'events', 'promotions', 'schema_migrations'];
    -- tables the writer changes but never deletes from / only appends to (007_web_tokens.sql)
    writer_no_delete text[] := array['web_tokens'];
    writer_append_only text[] := array['web_audit'];
    promotion_columns text;
begin
    execute format('revoke all on all functions in schema %I from public', s);

    for role in
        select rolname from pg_roles
        where rolname in ('abflow_writer', 'abflow_reader', 'abflow_app')
    loop
        execute format('revoke all on all functions in schema %I from %I', s, role);
        execute format('grant usage on schema %I to %I', s, role);
        execute format('grant execute on function %I.assign_variant(text, text) to %I', s, role);
        for rel in
            select c.relname, c.relkind
            from pg_class as c
            where c.relnamespace = s::regnamespace and c.relkind in ('r', 'p', 'v', 'm')
        loop
            execute format('revoke all on %I.%I from %I', s, rel.relname, role);
            if role = 'abflow_writer' or readable -> role ? rel.relname then
                execute format('grant select on %I.%I to %I', s, rel.relname, role);
            end if;
            if role = 'abflow_writer' and rel.relkind in ('r', 'p')
                and not rel.relname = any(writer_read_only)
            then
                execute format(
                    'grant %s on %I.%I to %I',
                    case
                        when rel.relname = any(writer_append_only) then 'insert'
                        when rel.relname = any(writer_no_delete) then 'insert, update'
                        else 'insert, update, delete'
                    end,
                    s, rel.relname, role
                );
            end if;
        end loop;
    end loop;

    if exists (select from pg_roles where rolname = 'abflow_writer') then
        -- 003_roles.sql let the writer execute every later function of the schema; it needs only
        -- assign_variant (trigger functions run without EXECUTE).
        execute format(
            'alter default privileges in schema %I revoke execute on functions from abflow_writer',
            s
        );
        execute format('grant usage on all sequences in schema %I to abflow_writer', s);
        -- promotions is append-only: the writer inserts the request, never the stamp (id, at and
        -- db_user come from defaults and the promotions_stamp trigger).
        select string_agg(quote_ident(a.attname), ', ' order by a.attnum)
        into promotion_columns
        from pg_attribute as a
        where a.attrelid = format('%I.promotions', s)::regclass
            and a.attnum > 0 and not a.attisdropped
            and a.attname not in ('id', 'at', 'db_user');
        execute format('grant insert (%s) on %I.promotions to abflow_writer', promotion_columns, s);
    end if;
end
$$;
