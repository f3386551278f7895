//! Per-key usage, counted in memory on the hot path and written to the log
//! as one summary per key per interval. One key's summary can never stop
//! the others: a batch the store refuses is written key by key, a summary
//! refused for its content is dropped (and counted), and only a store that
//! cannot write keeps the counts for the next attempt.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use gatehouse_domain::ids::{AccountId, KeyId};
use gatehouse_domain::usage::{UsageWindow, usage_stream};
use gatehouse_eventstore::{EventStore, ExpectedVersion, Metadata, NewEvent, StoreError, StreamId};

/// Counts uses and denials per key until the next flush.
#[derive(Default)]
pub struct UsageRecorder {
    windows: Mutex<HashMap<KeyId, UsageWindow>>,
    /// Since when every flush has failed to write (for readiness).
    failing_since: Mutex<Option<Instant>>,
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
    /// one transaction; if the store refuses that, key by key. Returns how
    /// many summaries were written. Counts the store could not take are
    /// kept for the next attempt; a summary refused for what it holds is
    /// dropped, so it cannot fail every later flush.
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
            self.flushed(true);
            return Ok(0);
        }
        let summary = |key: KeyId, window: &UsageWindow| {
            let event = window.summary(key, now);
            let metadata = Metadata {
                actor: Some(writer.to_string()),
                ..Default::default()
            };
            Ok::<_, StoreError>((
                StreamId::parse(usage_stream(key))?,
                ExpectedVersion::Any,
                vec![NewEvent::new(event.event_type(), event.payload()).with_metadata(metadata)],
            ))
        };
        let batches = windows
            .iter()
            .map(|(key, window)| summary(*key, window))
            .collect::<Result<Vec<_>, _>>();
        let first_error = match batches {
            Ok(batches) => {
                let count = batches.len();
                match store.append_all(batches).await {
                    Ok(_) => {
                        self.flushed(true);
                        return Ok(count);
                    }
                    Err(error) => error,
                }
            }
            Err(error) => error,
        };
        if !first_error.is_refused_content() {
            self.keep(windows);
            self.flushed(false);
            return Err(first_error);
        }
        // One summary (or more) is refused: write each on its own.
        let mut written = 0;
        let mut kept = Vec::new();
        let mut last_error = None;
        for (key, window) in windows {
            let outcome = match summary(key, &window) {
                Ok((stream, expected, events)) => store.append(&stream, expected, events).await,
                Err(error) => Err(error),
            };
            match outcome {
                Ok(_) => written += 1,
                Err(error) if error.is_refused_content() => {
                    metrics::counter!("gatehouse_usage_summaries_dropped_total").increment(1);
                    tracing::warn!(key_id = %key, %error, "dropping a usage summary the event log refuses");
                }
                Err(error) => {
                    kept.push((key, window));
                    last_error = Some(error);
                }
            }
        }
        self.keep(kept);
        match last_error {
            Some(error) => {
                self.flushed(false);
                Err(error)
            }
            None => {
                self.flushed(true);
                Ok(written)
            }
        }
    }

    /// How long every flush has failed to write; `None` while they succeed.
    pub fn failing_for(&self) -> Option<Duration> {
        self.failing_since
            .lock()
            .ok()
            .and_then(|since| since.map(|at| at.elapsed()))
    }

    fn flushed(&self, ok: bool) {
        if let Ok(mut since) = self.failing_since.lock() {
            match (ok, *since) {
                (true, _) => *since = None,
                (false, None) => *since = Some(Instant::now()),
                (false, Some(_)) => {}
            }
        }
        metrics::gauge!("gatehouse_usage_flush_failing").set(if ok { 0.0 } else { 1.0 });
        if !ok {
            metrics::counter!("gatehouse_usage_flush_failures_total").increment(1);
        }
    }

    /// Puts counts back, merged with anything counted meanwhile.
    fn keep(&self, windows: Vec<(KeyId, UsageWindow)>) {
        if let Ok(mut current) = self.windows.lock() {
            for (key, mut window) in windows {
                if let Some(later) = current.remove(&key) {
                    window.merge(later);
                }
                current.insert(key, window);
            }
        }
    }
}
