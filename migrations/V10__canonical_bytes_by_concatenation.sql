-- The same canonical bytes as V9, built by concatenation instead of unnest/string_agg:
-- the hash-chain trigger runs for every appended event, and this form costs about half
-- as much. The output is byte for byte the one V6/V9 define (each field as text, in the
-- same order, prefixed by its length in bytes and ':'), so every stored hash still
-- verifies. Every field is NOT NULL (the transaction slot is coalesced), so no field can
-- turn the whole concatenation NULL.

CREATE OR REPLACE FUNCTION events_canonical_bytes(e events) RETURNS bytea
LANGUAGE sql STABLE AS $$
    SELECT convert_to(
        octet_length(e.global_position::text)::text || ':' || e.global_position::text ||
        octet_length(coalesce(e.origin_transaction_id, e.transaction_id)::text)::text || ':' ||
            coalesce(e.origin_transaction_id, e.transaction_id)::text ||
        octet_length(e.event_id::text)::text || ':' || e.event_id::text ||
        octet_length(e.aggregate_type)::text || ':' || e.aggregate_type ||
        octet_length(e.aggregate_id)::text || ':' || e.aggregate_id ||
        octet_length(e.sequence::text)::text || ':' || e.sequence::text ||
        octet_length(e.event_type)::text || ':' || e.event_type ||
        octet_length(e.event_version)::text || ':' || e.event_version ||
        octet_length(e.payload::text)::text || ':' || e.payload::text ||
        octet_length(e.metadata::text)::text || ':' || e.metadata::text ||
        octet_length(to_char(e.recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))::text
            || ':' || to_char(e.recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'UTF8')
$$;
