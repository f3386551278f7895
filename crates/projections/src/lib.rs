//! Read models projected from the event log, each driven by a
//! [`gatehouse_eventstore::ProjectionRunner`] and rebuildable from position 0
//! with `gatehouse projections rebuild NAME`.
//!
//! - [`StreamIndex`] (`stream_index`): one row per stream — its kind, version
//!   and last event — for operators browsing the log;
//! - [`api_keys::ApiKeys`] (`api_keys`): one row per API key, for listings and
//!   the grace/expiry scheduler;
//! - [`key_activity::KeyActivity`] (`key_activity`): the key activity log
//!   auditors read.

pub mod api_keys;
pub mod key_activity;

pub use api_keys::ApiKeys;
pub use key_activity::KeyActivity;

use gatehouse_eventstore::{Projection, RecordedEvent, StoreError, StoreTx, on_backend};

/// Names accepted by `gatehouse projections rebuild`.
pub const NAMES: [&str; 3] = [StreamIndex::NAME, ApiKeys::NAME, KeyActivity::NAME];

/// One row per stream: `kind` (the id's prefix before the first `-`), current
/// version, last position and event type.
#[derive(Debug, Clone, Copy, Default)]
pub struct StreamIndex;

impl StreamIndex {
    pub const NAME: &'static str = "stream_index";
}

impl Projection for StreamIndex {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    async fn apply(&self, tx: &mut StoreTx, event: &RecordedEvent) -> Result<(), StoreError> {
        const UPSERT: &str = "INSERT INTO stream_index (stream_id, kind, version, last_position, last_event_type, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version, \
             last_position = excluded.last_position, last_event_type = excluded.last_event_type, \
             updated_at = excluded.updated_at";
        let stream = event.stream_id.as_str();
        let kind = stream.split_once('-').map_or(stream, |(kind, _)| kind);
        let version = i64::try_from(event.stream_version).unwrap_or(i64::MAX);
        let position = i64::try_from(event.position).unwrap_or(i64::MAX);
        on_backend!(tx, |conn| sqlx::query(UPSERT)
            .bind(stream)
            .bind(kind)
            .bind(version)
            .bind(position)
            .bind(event.event_type.as_str())
            .bind(event.occurred_at)
            .execute(conn)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    async fn reset(&self, tx: &mut StoreTx) -> Result<(), StoreError> {
        on_backend!(tx, |conn| sqlx::query("DELETE FROM stream_index")
            .execute(conn)
            .await
            .map(|_| ()))?;
        Ok(())
    }
}
