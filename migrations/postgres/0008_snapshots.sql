-- Snapshots of in-memory read models (the verifier's index): start-up loads
-- the latest one and folds only the events after `position`. The bytes are
-- split into chunks so no single value nears Postgres's 1 GB field limit.
CREATE TABLE snapshots (
    name     TEXT PRIMARY KEY,
    position BIGINT NOT NULL,
    size     BIGINT NOT NULL,
    chunks   INTEGER NOT NULL,
    taken_at BIGINT NOT NULL
);

CREATE TABLE snapshot_chunks (
    name TEXT NOT NULL,
    seq  INTEGER NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (name, seq)
);
