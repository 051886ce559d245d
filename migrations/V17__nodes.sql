-- The Berth processes (`berth serve`) on this database, each under its node name: its
-- role, where the other nodes reach it, and when it last said it was alive. Not events:
-- liveness changes every few seconds and says nothing an auditor needs; what a node does
-- to a server is recorded on the server's stream (`ServerContainerCreated` and
-- `ServerAdopted` name the node).
CREATE TABLE nodes (
    name       text PRIMARY KEY,
    role       text NOT NULL,
    url        text NOT NULL,
    started_at timestamptz NOT NULL,
    seen_at    timestamptz NOT NULL,
    -- Set while this node holds the worker lease (drives the runtime); cleared when it
    -- loses it or stops.
    active_since timestamptz
);

-- Which node runs each server's container or process.
ALTER TABLE servers ADD COLUMN node text;
