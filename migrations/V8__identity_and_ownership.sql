-- Identity and tenant isolation.
--
-- 1. `stream_owners`: who owns each event stream, maintained by the store itself in the
--    transaction that writes the stream's first event. Access checks and the event feed
--    join it, so a stream's owner is known the instant its first event commits: no
--    projection lag can hide a new stream from its owner or show it to anyone else.
--    The owner is the first event's `owner` field (servers, custom catalog entries,
--    users) or `requested_by` (bulk operations). Streams without one (predefined catalog
--    entries) belong to no user: only administrators see their events.
--
-- 2. `users` and `api_keys`: the identity read model, built by the `identity` projector
--    from the `user` events. Keys are stored as keyed hashes only.
--
-- 3. `catalog_entries.published`: custom entries are private to their owner until an
--    administrator publishes them.

CREATE TABLE stream_owners (
    aggregate_type text NOT NULL,
    aggregate_id   text NOT NULL,
    owner          text NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id)
);

CREATE INDEX stream_owners_by_owner ON stream_owners (owner, aggregate_type, aggregate_id);

CREATE FUNCTION stream_owner_of(payload jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN jsonb_typeof(payload -> 'owner') = 'string' THEN payload ->> 'owner'
        WHEN jsonb_typeof(payload -> 'requested_by') = 'string' THEN payload ->> 'requested_by'
    END
$$;

CREATE FUNCTION events_record_owner() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    found_owner text;
BEGIN
    IF NEW.sequence = 1 THEN
        found_owner := stream_owner_of(NEW.payload);
        IF found_owner IS NOT NULL THEN
            INSERT INTO stream_owners (aggregate_type, aggregate_id, owner)
            VALUES (NEW.aggregate_type, NEW.aggregate_id, found_owner)
            ON CONFLICT DO NOTHING;
        END IF;
    END IF;
    RETURN NULL;
END;
$$;

INSERT INTO stream_owners (aggregate_type, aggregate_id, owner)
SELECT aggregate_type, aggregate_id, stream_owner_of(payload)
FROM events
WHERE sequence = 1 AND stream_owner_of(payload) IS NOT NULL
ON CONFLICT DO NOTHING;

CREATE TRIGGER events_stream_owner
    AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION events_record_owner();

-- Identity read model -------------------------------------------------------------------

CREATE TABLE users (
    id         uuid PRIMARY KEY,
    name       text        NOT NULL UNIQUE,
    role       text        NOT NULL,
    disabled   boolean     NOT NULL DEFAULT false,
    forgotten  boolean     NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    position   bigint      NOT NULL
);

CREATE TABLE api_keys (
    id           uuid PRIMARY KEY,
    user_id      uuid        NOT NULL,
    name         text        NOT NULL,
    -- The key's first characters (`berth_xxxxxxxx`), shown to identify it and used to
    -- find it; not unique, since a collision must never stop the projection.
    prefix       text        NOT NULL,
    -- HMAC-SHA-256 of the whole key under the installation's key-hashing key, hex.
    hash         text        NOT NULL,
    expires_at   timestamptz,
    revoked_at   timestamptz,
    created_at   timestamptz NOT NULL,
    position     bigint      NOT NULL
);

CREATE INDEX api_keys_by_prefix ON api_keys (prefix);
CREATE INDEX api_keys_by_user ON api_keys (user_id, created_at);

ALTER TABLE catalog_entries ADD COLUMN published boolean NOT NULL DEFAULT false;
