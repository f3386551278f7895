-- Projection: API keys per account (see gatehouse-projections::ApiKeys), for
-- listings and the grace/expiry scheduler. Never holds a secret or its hash.
CREATE TABLE api_keys (
    key_id                 TEXT PRIMARY KEY,
    account_id             TEXT        NOT NULL,
    name                   TEXT        NOT NULL,
    scopes                 TEXT        NOT NULL,
    hint                   TEXT        NOT NULL,
    rotations              BIGINT      NOT NULL DEFAULT 0,
    created_at             TIMESTAMPTZ NOT NULL,
    rotated_at             TIMESTAMPTZ,
    expires_at             TIMESTAMPTZ,
    revoked_at             TIMESTAMPTZ,
    previous_valid_until   TIMESTAMPTZ,
    grace_expiry_recorded  BOOLEAN     NOT NULL DEFAULT TRUE,
    expiry_recorded        BOOLEAN     NOT NULL DEFAULT FALSE
);
CREATE INDEX api_keys_account ON api_keys (account_id, key_id);
