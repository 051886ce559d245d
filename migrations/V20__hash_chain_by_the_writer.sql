-- The writer hashes the events it appends (Berth computes the same canonical bytes as
-- `events_canonical_bytes`, in Rust, before the INSERT), so the chain trigger no longer
-- runs for them: it was the costliest part of storing an event, a PL/pgSQL call, a
-- lookup of the predecessor and the text rendering of the whole row, once per row.
--
-- The trigger stays for every other writer: a row that arrives without a hash (an
-- import, a hand-written INSERT) is chained by the database exactly as before.
-- `berth verify` recomputes every hash from the stored row, whoever computed it.
DROP TRIGGER events_hash_chain ON events;
CREATE TRIGGER events_hash_chain
    BEFORE INSERT ON events
    FOR EACH ROW WHEN (NEW.hash IS NULL) EXECUTE FUNCTION events_chain();
