-- Console sessions, as the identity projection reads them from `ConsoleSessionOpened` and
-- `ConsoleSessionEnded`: a session cookie works only while its row is here and not ended,
-- so signing out holds on every Berth on the database and across restarts.

CREATE TABLE console_sessions (
    id         uuid PRIMARY KEY,
    user_id    uuid NOT NULL,
    key_id     uuid NOT NULL,
    expires_at timestamptz NOT NULL,
    opened_at  timestamptz NOT NULL,
    ended_at   timestamptz,
    position   bigint NOT NULL
);
