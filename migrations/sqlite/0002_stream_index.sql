-- Projection: one row per stream (see gatehouse-projections::StreamIndex).
CREATE TABLE stream_index (
    stream_id       TEXT PRIMARY KEY,
    kind            TEXT    NOT NULL,
    version         INTEGER NOT NULL,
    last_position   INTEGER NOT NULL,
    last_event_type TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL
);
CREATE INDEX stream_index_kind ON stream_index (kind, stream_id);
