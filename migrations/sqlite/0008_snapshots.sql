-- See the Postgres migration.
CREATE TABLE snapshots (
    name     TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    size     INTEGER NOT NULL,
    chunks   INTEGER NOT NULL,
    taken_at INTEGER NOT NULL
);

CREATE TABLE snapshot_chunks (
    name TEXT NOT NULL,
    seq  INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (name, seq)
);
