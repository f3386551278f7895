-- Operational state of the login throttle (not part of the event log): one row
-- per username hash or client address, updated under a row lock so parallel
-- guesses are counted one by one.
CREATE TABLE login_throttle (
    key          TEXT PRIMARY KEY,
    failures     BIGINT      NOT NULL DEFAULT 0,
    locked_until TIMESTAMPTZ,
    updated_at   TIMESTAMPTZ NOT NULL
);
