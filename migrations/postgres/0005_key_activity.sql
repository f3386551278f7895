-- Projection: the key activity log auditors read (see
-- gatehouse-projections::KeyActivity): every lifecycle event of every key and
-- the verifiers' usage summaries, in log order.
CREATE TABLE key_activity (
    position       BIGINT PRIMARY KEY,
    account_id     TEXT        NOT NULL,
    key_id         TEXT        NOT NULL,
    kind           TEXT        NOT NULL,
    actor          TEXT,
    client_address TEXT,
    occurred_at    TIMESTAMPTZ NOT NULL,
    reason         TEXT,
    usage          TEXT
);
CREATE INDEX key_activity_account ON key_activity (account_id, position);
CREATE INDEX key_activity_key ON key_activity (key_id, position);

ALTER TABLE api_keys ADD COLUMN last_used_at TIMESTAMPTZ;
