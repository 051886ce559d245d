-- Events imported from another store (`berth events import`).
--
-- `transaction_id` orders the feed and decides when an event is visible to readers, so
-- an imported event must carry the id of the transaction that imported it here: the
-- source's ids mean nothing in this cluster (a fresh cluster's ids are smaller, so new
-- events would sort before imported ones, and imported ones would be held back until
-- this cluster's ids caught up). The id the event was first committed in is kept in
-- `origin_transaction_id` (NULL for events written here), and it is that id the hash
-- covers, so an imported event keeps the hash it was exported with.
--
-- The canonical bytes are unchanged for every event written here: the transaction id
-- slot holds `coalesce(origin_transaction_id, transaction_id)`, which is
-- `transaction_id` when nothing was imported. `berth verify` computes the same.

ALTER TABLE events ADD COLUMN origin_transaction_id xid8;

CREATE OR REPLACE FUNCTION events_canonical_bytes(e events) RETURNS bytea
LANGUAGE sql STABLE AS $$
    SELECT convert_to(string_agg(octet_length(f)::text || ':' || f, '' ORDER BY n), 'UTF8')
    FROM unnest(ARRAY[
        e.global_position::text,
        coalesce(e.origin_transaction_id, e.transaction_id)::text,
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
