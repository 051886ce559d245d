-- Servers carry a restart policy and a count of automatic restarts in a row.
ALTER TABLE servers
    ADD COLUMN restart_policy   jsonb   NOT NULL DEFAULT '{"type":"never"}',
    ADD COLUMN restart_attempts integer NOT NULL DEFAULT 0;
