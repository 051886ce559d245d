-- Appends are announced by the writer after its transaction commits (see
-- infrastructure/src/announce.rs), no longer by a trigger inside it: a NOTIFY in the
-- appending transaction serialises every appending commit on PostgreSQL's notification
-- lock, held across the WAL flush, so concurrent commands could not share a flush.
-- Listeners keep their poll, so an append nobody announces is still read, later.

DROP TRIGGER events_notify_on_append ON events;
DROP FUNCTION events_notify();
