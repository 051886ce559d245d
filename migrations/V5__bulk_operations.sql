-- The bulk operations read model, built by the `bulk` projector from the
-- `bulk_operation` events: one row per operation with its counts, and one row per target
-- with its outcome. Disposable like every read model (`berth projections rebuild bulk`).

CREATE TABLE bulk_operations (
    id           uuid PRIMARY KEY,
    operation    text        NOT NULL,
    -- running | completed | partially_failed | failed
    state        text        NOT NULL,
    requested_by text        NOT NULL,
    total        integer     NOT NULL,
    succeeded    integer     NOT NULL DEFAULT 0,
    failed       integer     NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    completed_at timestamptz,
    -- The global position of the last event applied to this operation.
    position     bigint      NOT NULL
);

CREATE INDEX bulk_operations_running ON bulk_operations (created_at) WHERE state = 'running';

-- One row per target, in the order asked (`ordinal` from 1).
CREATE TABLE bulk_targets (
    bulk_id   uuid    NOT NULL,
    ordinal   integer NOT NULL,
    server_id uuid    NOT NULL,
    -- pending | succeeded | failed
    outcome   text    NOT NULL DEFAULT 'pending',
    error     text,
    PRIMARY KEY (bulk_id, ordinal),
    UNIQUE (bulk_id, server_id)
);
