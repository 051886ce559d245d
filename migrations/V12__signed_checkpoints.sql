-- Signed checkpoints of the event log (see `infrastructure/src/checkpoint`): every so
-- often Berth signs, with an Ed25519 key kept outside the database, how far the log went
-- (its head in feed order), how many events it held and a digest chained over every
-- event's hash in feed order. `berth verify` recomputes each from the events: a deleted,
-- altered, reordered or inserted event before a checkpoint no longer matches it.
CREATE TABLE log_checkpoints (
    transaction_id xid8        NOT NULL,
    position       bigint      NOT NULL,
    event_count    bigint      NOT NULL,
    head_hash      text        NOT NULL,
    digest         text        NOT NULL,
    recorded_at    text        NOT NULL,
    key_id         text        NOT NULL,
    signature      text        NOT NULL,
    PRIMARY KEY (transaction_id, position)
);

CREATE FUNCTION log_checkpoints_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the log_checkpoints table is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER log_checkpoints_append_only
    BEFORE UPDATE OR DELETE ON log_checkpoints
    FOR EACH ROW EXECUTE FUNCTION log_checkpoints_refuse_change();

CREATE TRIGGER log_checkpoints_no_truncate
    BEFORE TRUNCATE ON log_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION log_checkpoints_refuse_change();
