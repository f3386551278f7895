//! Per-key usage, counted in memory on the hot path and written to the log
//! as one summary per key per interval.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use gatehouse_domain::ids::{AccountId, KeyId};
use gatehouse_domain::usage::{UsageWindow, usage_stream};
use gatehouse_eventstore::{EventStore, ExpectedVersion, Metadata, NewEvent, StoreError, StreamId};

/// Counts uses and denials per key until the next flush.
#[derive(Default)]
pub struct UsageRecorder {
    windows: Mutex<HashMap<KeyId, UsageWindow>>,
}

impl UsageRecorder {
    /// Counts one presentation of `key`: allowed (`denial` = `None`) or denied.
    pub fn record(
        &self,
        key: KeyId,
        account: AccountId,
        caller: Option<&str>,
        denial: Option<&str>,
        now: DateTime<Utc>,
    ) {
        if let Ok(mut windows) = self.windows.lock() {
            windows
                .entry(key)
                .or_insert_with(|| UsageWindow::new(account, now))
                .record(caller, denial, now);
        }
    }

    /// Writes one `KeyUsageRecorded.v1` per key used since the last flush, in
    /// one transaction. On failure the counts are kept for the next attempt.
    pub async fn flush(
        &self,
        store: &EventStore,
        writer: &str,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let windows: Vec<(KeyId, UsageWindow)> = match self.windows.lock() {
            Ok(mut windows) => windows.drain().collect(),
            Err(_) => return Ok(0),
        };
        if windows.is_empty() {
            return Ok(0);
        }
        let mut batches = Vec::with_capacity(windows.len());
        for (key, window) in &windows {
            let event = window.summary(*key, now);
            let metadata = Metadata {
                actor: Some(writer.to_string()),
                ..Default::default()
            };
            batches.push((
                StreamId::parse(usage_stream(*key))?,
                ExpectedVersion::Any,
                vec![NewEvent::new(event.event_type(), event.payload()).with_metadata(metadata)],
            ));
        }
        let count = batches.len();
        if let Err(error) = store.append_all(batches).await {
            // Put the counts back, merged with anything counted meanwhile.
            if let Ok(mut current) = self.windows.lock() {
                for (key, mut window) in windows {
                    if let Some(later) = current.remove(&key) {
                        window.merge(later);
                    }
                    current.insert(key, window);
                }
            }
            return Err(error);
        }
        Ok(count)
    }
}
