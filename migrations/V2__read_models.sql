-- Read models built by the projectors in `projections/` from the event feed. Each is
-- disposable: `berth projections rebuild NAME` empties it and replays the log.

-- Catalog ------------------------------------------------------------------------------

-- Live catalog entries; removed entries are deleted.
CREATE TABLE catalog_entries (
    id            uuid PRIMARY KEY,
    name          text        NOT NULL,
    description   text        NOT NULL,
    kind          text        NOT NULL,
    transport     text        NOT NULL,
    runtime       jsonb       NOT NULL,
    config_schema jsonb       NOT NULL,
    resources     jsonb       NOT NULL,
    version       bigint      NOT NULL,
    owner         text,
    -- Union of the tools last discovered by the servers of this entry.
    tools         jsonb       NOT NULL DEFAULT '[]',
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    position      bigint      NOT NULL
);

-- Lists are ordered by name; filters narrow by kind or transport first.
CREATE INDEX catalog_entries_by_name ON catalog_entries (lower(name), id);
CREATE INDEX catalog_entries_by_kind ON catalog_entries (kind, lower(name), id);
CREATE INDEX catalog_entries_by_transport ON catalog_entries (transport, lower(name), id);

-- The tools each server last reported, and which entry it instantiates, so the catalog
-- can show the union per entry without reading the servers projection.
CREATE TABLE catalog_server_tools (
    server_id  uuid PRIMARY KEY,
    catalog_id uuid   NOT NULL,
    tools      jsonb  NOT NULL DEFAULT '[]',
    position   bigint NOT NULL
);

CREATE INDEX catalog_server_tools_by_catalog ON catalog_server_tools (catalog_id);

-- Servers ------------------------------------------------------------------------------

-- Live servers; deleted servers are deleted. Secrets appear as their key names only.
CREATE TABLE servers (
    id              uuid PRIMARY KEY,
    name            text        NOT NULL,
    catalog_id      uuid        NOT NULL,
    catalog_version bigint      NOT NULL,
    owner           text        NOT NULL,
    state           text        NOT NULL,
    enabled         boolean     NOT NULL,
    restart_pending boolean     NOT NULL,
    delete_pending  boolean     NOT NULL,
    config          jsonb       NOT NULL,
    -- Names of the secret keys, as a JSON array; never their sealed values.
    secret_keys     jsonb       NOT NULL,
    health          text        NOT NULL,
    tools           jsonb       NOT NULL,
    container_id    text,
    last_error      text,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    -- The aggregate's last sequence, and the global position of its last event.
    version         bigint      NOT NULL,
    position        bigint      NOT NULL
);

CREATE INDEX servers_by_name ON servers (lower(name), id);
CREATE INDEX servers_by_owner ON servers (owner, lower(name), id);
CREATE INDEX servers_by_state ON servers (state, lower(name), id);
CREATE INDEX servers_by_catalog ON servers (catalog_id, lower(name), id);

-- Audit --------------------------------------------------------------------------------

-- One row per event, of every aggregate type.
CREATE TABLE audit_log (
    position       bigint PRIMARY KEY,
    event_id       uuid        NOT NULL,
    at             timestamptz NOT NULL,
    actor          text        NOT NULL,
    action         text        NOT NULL,
    target_type    text        NOT NULL,
    target_id      text        NOT NULL,
    summary        text        NOT NULL,
    request_id     text,
    correlation_id text,
    causation_id   text
);

-- Every filter is answered newest first (and, for exports, oldest first) by position.
CREATE INDEX audit_log_by_actor ON audit_log (actor, position);
CREATE INDEX audit_log_by_target ON audit_log (target_type, target_id, position);
CREATE INDEX audit_log_by_action ON audit_log (action, position);
CREATE INDEX audit_log_by_time ON audit_log (at);
CREATE INDEX audit_log_by_correlation ON audit_log (correlation_id, position)
    WHERE correlation_id IS NOT NULL;

-- Names of servers and catalog entries as last recorded, so summaries can say
-- `server "github-prod"` for events that carry only an id.
CREATE TABLE audit_target_names (
    target_type text NOT NULL,
    target_id   text NOT NULL,
    name        text NOT NULL,
    PRIMARY KEY (target_type, target_id)
);

-- Substring search -----------------------------------------------------------------------

-- `q` filters are `ILIKE '%…%'`, which only trigram indexes serve. pg_trgm ships with
-- PostgreSQL's contrib and is a trusted extension, but a server built without contrib, or
-- a role that may not create extensions, should still get a working (if slower) schema.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm') THEN
        CREATE EXTENSION IF NOT EXISTS pg_trgm;
        CREATE INDEX catalog_entries_name_search
            ON catalog_entries USING gin (name gin_trgm_ops);
        CREATE INDEX catalog_entries_description_search
            ON catalog_entries USING gin (description gin_trgm_ops);
        CREATE INDEX servers_name_search ON servers USING gin (name gin_trgm_ops);
    ELSE
        RAISE NOTICE 'pg_trgm is not available: text search on read models scans tables';
    END IF;
EXCEPTION
    WHEN insufficient_privilege THEN
        RAISE NOTICE 'pg_trgm could not be created: text search on read models scans tables';
END;
$$;
