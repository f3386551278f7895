-- Projection: API keys per account (see the Postgres migration).
CREATE TABLE api_keys (
    key_id                 TEXT PRIMARY KEY,
    account_id             TEXT    NOT NULL,
    name                   TEXT    NOT NULL,
    scopes                 TEXT    NOT NULL,
    hint                   TEXT    NOT NULL,
    rotations              INTEGER NOT NULL DEFAULT 0,
    created_at             TEXT    NOT NULL,
    rotated_at             TEXT,
    expires_at             TEXT,
    revoked_at             TEXT,
    previous_valid_until   TEXT,
    grace_expiry_recorded  BOOLEAN NOT NULL DEFAULT TRUE,
    expiry_recorded        BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX api_keys_account ON api_keys (account_id, key_id);
