-- Envelope encryption: one data key per owner, wrapped (XChaCha20-Poly1305, associated
-- data `owner \0 key_id`) by the master key named in `master_key_id`. This is a key table,
-- not the event log: `berth keys rotate-master` re-wraps rows in place, and
-- `berth users forget` crypto-shreds an owner by wiping the wrapped key and setting
-- `destroyed_at` (the row stays, so the owner is never silently given a new key).

CREATE TABLE owner_data_keys (
    owner         text PRIMARY KEY,
    key_id        text        NOT NULL UNIQUE,
    wrapped_key   bytea,
    wrap_nonce    bytea,
    master_key_id text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    destroyed_at  timestamptz,
    CONSTRAINT owner_data_keys_live_or_destroyed CHECK (
        (destroyed_at IS NULL AND wrapped_key IS NOT NULL AND wrap_nonce IS NOT NULL
             AND master_key_id IS NOT NULL)
        OR (destroyed_at IS NOT NULL AND wrapped_key IS NULL AND wrap_nonce IS NULL)
    )
);
