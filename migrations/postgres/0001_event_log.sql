-- The append-only event log, shared by every issuer and verifier.
CREATE TABLE events (
    -- Global position; catch-up readers read by it. Appends are serialised by a
    -- transaction-scoped advisory lock, so positions commit in order and a reader
    -- that has seen position N has seen every committed position below N.
    position       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id      TEXT        NOT NULL CHECK (length(stream_id) BETWEEN 1 AND 200),
    stream_version BIGINT      NOT NULL CHECK (stream_version > 0),
    event_type     TEXT        NOT NULL,
    payload        JSONB       NOT NULL,
    metadata       JSONB       NOT NULL,
    occurred_at    TIMESTAMPTZ NOT NULL,
    recorded_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Optimistic concurrency backstop: one event per stream version.
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, stream_version)
);

-- Events are never updated or deleted.
CREATE FUNCTION gatehouse_events_immutable() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the event log is append-only (% refused)', TG_OP;
END;
$$;

CREATE TRIGGER events_append_only
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION gatehouse_events_immutable();

CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION gatehouse_events_immutable();

-- Where each projection has got to; written in the same transaction as the
-- projection's read model.
CREATE TABLE projection_checkpoints (
    name       TEXT PRIMARY KEY,
    position   BIGINT      NOT NULL CHECK (position >= 0),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
