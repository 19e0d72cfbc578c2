-- Deterministic sticky assignment (SPEC §3.4), identical to abflow.client.assign_variant:
-- bucket = first 8 bytes of sha256(experiment_key || ':' || unit_id) as unsigned big-endian / 2^64;
-- variants in definition order take consecutive weight intervals; a promoted variant wins;
-- draft/stopped experiments (and unknown ones) get the control.
create or replace function assign_variant(p_experiment_key text, p_unit_id text)
returns text
language plpgsql
stable
set search_path from current
as $$
declare
    cfg record;
    bucket numeric;
    cumulative numeric := 0;
    v jsonb;
    control_key text;
begin
    select * into cfg from experiment_config where experiment_key = p_experiment_key;
    if not found then
        return null;
    end if;
    select elem ->> 'key' into control_key
    from jsonb_array_elements(cfg.variants) as elem
    where coalesce((elem ->> 'control')::boolean, false)
    limit 1;
    if cfg.promoted_variant_key is not null then
        return cfg.promoted_variant_key;
    end if;
    if cfg.status <> 'running' then
        return control_key;
    end if;
    -- 'x' || 16 hex digits -> bit(64) -> bigint is signed; shift into [0, 2^64) before dividing
    bucket := (('x' || substr(encode(sha256(convert_to(p_experiment_key || ':' || p_unit_id, 'UTF8')), 'hex'), 1, 16))::bit(64)::bigint)::numeric;
    if bucket < 0 then
        bucket := bucket + 18446744073709551616;
    end if;
    bucket := bucket / 18446744073709551616;
    for v in select * from jsonb_array_elements(cfg.variants) loop
        cumulative := cumulative + (v ->> 'weight')::numeric;
        if bucket < cumulative then
            return v ->> 'key';
        end if;
    end loop;
    -- rounding of weights that sum to 1 within 1e-6: the last arm takes the rest
    return (cfg.variants -> (jsonb_array_length(cfg.variants) - 1)) ->> 'key';
end;
$$;
comment on function assign_variant(text, text) is
    'Sticky variant for a unit: sha256 bucket over experiment_config weights; promoted variant wins.';
