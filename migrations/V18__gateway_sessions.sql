-- The gateway's MCP sessions, so that a session opened on one Berth keeps working when
-- its next request reaches another on the same database: who opened it (every request
-- must come from the same user, key and profile) and the client's `initialize`, which
-- the other Berth replays to take the session up. Not events: a session says nothing an
-- auditor needs (each call it carries is recorded), and clients open many.
CREATE TABLE gateway_sessions (
    id         text PRIMARY KEY,
    -- Set once the opening request's answer is sent; a row without one is not taken up.
    user_id    uuid,
    key_id     uuid,
    profile    text,
    -- rmcp's session state: the client's `initialize` parameters.
    state      jsonb,
    opened_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX gateway_sessions_by_user ON gateway_sessions (user_id);
CREATE INDEX gateway_sessions_by_age ON gateway_sessions (opened_at);
