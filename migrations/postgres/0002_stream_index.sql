-- Projection: one row per stream (see gatehouse-projections::StreamIndex).
CREATE TABLE stream_index (
    stream_id       TEXT PRIMARY KEY,
    kind            TEXT        NOT NULL,
    version         BIGINT      NOT NULL,
    last_position   BIGINT      NOT NULL,
    last_event_type TEXT        NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX stream_index_kind ON stream_index (kind, stream_id);
