-- Projection: the key activity log (see the Postgres migration).
CREATE TABLE key_activity (
    position       INTEGER PRIMARY KEY,
    account_id     TEXT NOT NULL,
    key_id         TEXT NOT NULL,
    kind           TEXT NOT NULL,
    actor          TEXT,
    client_address TEXT,
    occurred_at    TEXT NOT NULL,
    reason         TEXT,
    usage          TEXT
);
CREATE INDEX key_activity_account ON key_activity (account_id, position);
CREATE INDEX key_activity_key ON key_activity (key_id, position);

ALTER TABLE api_keys ADD COLUMN last_used_at TEXT;
