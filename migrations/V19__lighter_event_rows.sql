-- Less work for every event written.
--
-- The owner trigger acted only on a stream's first event, yet fired (and queued an
-- after-trigger event) for every row: it now fires for first events only.
DROP TRIGGER events_stream_owner ON events;
CREATE TRIGGER events_stream_owner
    AFTER INSERT ON events
    FOR EACH ROW WHEN (NEW.sequence = 1) EXECUTE FUNCTION events_record_owner();

-- `events_by_type` was kept up to date on every row for two queries that read streams'
-- first events (the administrators, the bulk operations not finished); the feed's own
-- filter by type reads in feed order through `events_feed_order`. An index of first
-- events only serves those two, and costs a row per stream instead of per event.
DROP INDEX events_by_type;
CREATE INDEX events_stream_starts ON events (aggregate_type, global_position)
    WHERE sequence = 1;
