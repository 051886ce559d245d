-- The MCP gateway.
--
-- 1. `catalog_entries.gateway`: how the gateway treats an entry's servers (its call
--    timeout), from the entry's definition.
-- 2. `tool_calls`: the calls read model, one row per ToolCalled event (written with COPY
--    and never updated), read by server, newest first.
-- 3. `api_keys.profiles`: the gateway profiles a key is limited to (empty: not limited).

ALTER TABLE catalog_entries ADD COLUMN gateway jsonb NOT NULL DEFAULT '{}';

CREATE TABLE tool_calls (
    position        bigint PRIMARY KEY,
    call_id         uuid        NOT NULL,
    at              timestamptz NOT NULL,
    server_id       uuid        NOT NULL,
    server_name     text        NOT NULL,
    tool            text        NOT NULL,
    caller          text        NOT NULL,
    credential      text        NOT NULL,
    profile         text,
    outcome         text        NOT NULL,
    error_class     text,
    duration_us     bigint      NOT NULL,
    arguments_bytes bigint      NOT NULL,
    result_bytes    bigint      NOT NULL,
    request_id      text
);

CREATE INDEX tool_calls_by_server ON tool_calls (server_id, position);

ALTER TABLE api_keys ADD COLUMN profiles text[] NOT NULL DEFAULT '{}';
