-- Tamper evidence: every event carries a SHA-256 hash chaining it to the previous event of
-- its own stream (same aggregate type and id, sequence - 1). A chain per stream, not one
-- global chain, so writers of different aggregates never wait on each other.
--
--   hash = sha256(coalesce(prev_hash, '') || canonical bytes of the row)
--
-- The canonical bytes are each of these fields as text, in this order, each prefixed by
-- its length in bytes and ':' (so no field boundary can be moved): global_position,
-- transaction_id, event_id, aggregate_type, aggregate_id, sequence, event_type,
-- event_version, payload::text, metadata::text, and recorded_at in UTC as
-- 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"' (independent of the session's TimeZone).
-- `berth verify` recomputes the same bytes from the stored row.

ALTER TABLE events ADD COLUMN prev_hash bytea, ADD COLUMN hash bytea;

CREATE FUNCTION events_canonical_bytes(e events) RETURNS bytea
LANGUAGE sql STABLE AS $$
    SELECT convert_to(string_agg(octet_length(f)::text || ':' || f, '' ORDER BY n), 'UTF8')
    FROM unnest(ARRAY[
        e.global_position::text,
        e.transaction_id::text,
        e.event_id::text,
        e.aggregate_type,
        e.aggregate_id,
        e.sequence::text,
        e.event_type,
        e.event_version,
        e.payload::text,
        e.metadata::text,
        to_char(e.recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
    ]) WITH ORDINALITY AS t(f, n)
$$;

-- Whatever the writer sent, the database sets prev_hash and hash. Rows inserted earlier by
-- the same statement are visible to this (volatile) function, so a command's events chain
-- to each other within their single INSERT.
CREATE FUNCTION events_chain() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.prev_hash := NULL;
    IF NEW.sequence > 1 THEN
        SELECT hash INTO NEW.prev_hash FROM events
        WHERE aggregate_type = NEW.aggregate_type
          AND aggregate_id = NEW.aggregate_id
          AND sequence = NEW.sequence - 1;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'event % of %/% has no predecessor to chain to',
                NEW.sequence, NEW.aggregate_type, NEW.aggregate_id
                USING ERRCODE = 'foreign_key_violation';
        END IF;
    END IF;
    NEW.hash := sha256(coalesce(NEW.prev_hash, '\x'::bytea) || events_canonical_bytes(NEW));
    RETURN NEW;
END;
$$;

-- Backfill the rows written before this migration, stream by stream, in sequence order.
ALTER TABLE events DISABLE TRIGGER events_no_update_or_delete;
DO $$
DECLARE
    r events;
    prev bytea;
    stream_type text;
    stream_id text;
BEGIN
    FOR r IN SELECT * FROM events ORDER BY aggregate_type, aggregate_id, sequence LOOP
        IF stream_type IS DISTINCT FROM r.aggregate_type
           OR stream_id IS DISTINCT FROM r.aggregate_id THEN
            prev := NULL;
            stream_type := r.aggregate_type;
            stream_id := r.aggregate_id;
        END IF;
        r.prev_hash := prev;
        r.hash := sha256(coalesce(prev, '\x'::bytea) || events_canonical_bytes(r));
        UPDATE events SET prev_hash = r.prev_hash, hash = r.hash
        WHERE global_position = r.global_position;
        prev := r.hash;
    END LOOP;
END;
$$;
ALTER TABLE events ENABLE TRIGGER events_no_update_or_delete;

ALTER TABLE events ALTER COLUMN hash SET NOT NULL;

CREATE TRIGGER events_hash_chain
    BEFORE INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION events_chain();
