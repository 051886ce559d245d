-- One row naming this installation. Its id labels the containers Berth creates, so two
-- installations sharing a Docker engine never take each other's containers for their
-- own leftovers. The row is written at first start, not here, so databases cloned from
-- one migrated template still get ids of their own.
CREATE TABLE installation (
    singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    id         uuid        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
