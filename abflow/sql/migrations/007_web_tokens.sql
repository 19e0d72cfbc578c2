-- The web dashboard and HTTP API (issue 16). Runs with search_path set to the abflow schema.
--
-- * web_tokens: bearer tokens of `abflow token create NAME --scope read|write`. Only a SHA-256
--   hash of each token is stored (tokens are 256-bit random strings, printed once); a revoked
--   token keeps its row, so its name stays in the history of what it did.
-- * web_audit: every write made through the web app or the API, by token name (promotions keep
--   their own audit; there the token's name is the actor).
-- * experiments.archived_at/archived_by: `DELETE /api/experiments/{key}` archives an experiment
--   (hidden from the dashboard's default list, never analysed again); its history is never
--   deleted, and applying its definition again un-archives it.
--
-- The web app logs in as a member of abflow_writer and never runs DDL: it needs SELECT/INSERT/
-- UPDATE on web_tokens (token checks, `last_used_at`, revocation), SELECT/INSERT on the
-- append-only web_audit and UPDATE on experiments for archiving (which the writer already has).

create table if not exists web_tokens (
    id bigserial primary key,
    name text not null check (name ~ '^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$'),
    scope text not null check (scope in ('read', 'write')),
    token_hash text not null unique check (token_hash ~ '^[0-9a-f]{64}$'),
    token_prefix text not null,
    created_at timestamptz not null default now(),
    created_by text not null default session_user,
    last_used_at timestamptz,
    revoked_at timestamptz,
    revoked_by text
);
-- One live token per name: the name is what the audit records.
create unique index if not exists web_tokens_live_name_idx
    on web_tokens (name) where revoked_at is null;
comment on table web_tokens is
    'Bearer tokens of the abflow web app and HTTP API (`abflow token create`): name, scope '
    '(read or write) and the SHA-256 hash of the token, never the token itself.';
comment on column web_tokens.name is
    'Who holds the token; recorded as the actor of every web action made with it.';
comment on column web_tokens.token_hash is 'Hex SHA-256 of the token string.';
comment on column web_tokens.token_prefix is
    'The first characters of the token, to recognise it in `abflow token list`.';
comment on column web_tokens.last_used_at is 'Last use (updated at most once a minute).';
comment on column web_tokens.revoked_at is
    'Set by `abflow token revoke`: the token is refused from then on; the row is kept.';

create table if not exists web_audit (
    id bigserial primary key,
    at timestamptz not null default now(),
    token_name text not null,
    action text not null,
    experiment_key text,
    outcome text not null check (outcome in ('ok', 'refused')),
    detail text
);
create index if not exists web_audit_experiment_idx on web_audit (experiment_key, id);
comment on table web_audit is
    'Append-only log of every write made through the web app or HTTP API (create, status, '
    'promote, rollback, unpin, run, archive), by token name, including refused ones.';

alter table experiments
    add column if not exists archived_at timestamptz,
    add column if not exists archived_by text;
comment on column experiments.archived_at is
    'Set when the experiment was archived (web `DELETE /api/experiments/{key}`): hidden from the '
    'dashboard''s default list and no longer analysed; its results and audit are kept.';
comment on column experiments.archived_by is 'Token name (or login) that archived it.';

-- Dashboard reads: run history per experiment, newest first.
create index if not exists analysis_runs_experiment_started_idx
    on analysis_runs (experiment_key, as_of desc, started_at desc);

-- Grants: sql/privileges.sql (re-applied by every `abflow migrate`) gives abflow_writer SELECT,
-- INSERT, UPDATE on web_tokens and SELECT, INSERT on web_audit; abflow_reader and abflow_app get
-- nothing on either.

-- web_audit is append-only for everyone, the owner included (as promotions, 006).
drop trigger if exists web_audit_append_only on web_audit;
create trigger web_audit_append_only before update or delete on web_audit
    for each row execute function refuse_history_change();
drop trigger if exists web_audit_no_truncate on web_audit;
create trigger web_audit_no_truncate before truncate on web_audit
    for each statement execute function refuse_history_change();
