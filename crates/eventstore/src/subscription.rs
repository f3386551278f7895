//! Catch-up-then-live subscriptions over the global log.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use tokio::sync::mpsc;

use crate::{EventStore, Position, RecordedEvent, StoreError};

/// Events read per catch-up query.
const BATCH: usize = 500;

/// A stream of every event from a position on: first the history, then new
/// events as they commit. It never skips an event: it reads strictly by
/// position, and appends commit in position order (see [`crate::store`]).
/// Dropping it stops its reader task.
pub struct Subscription {
    rx: mpsc::Receiver<RecordedEvent>,
    task: tokio::task::JoinHandle<()>,
    /// Unix milliseconds of the reader's last successful read of the log.
    last_read: Arc<AtomicI64>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Subscription {
    /// The next event, waiting for one to be appended if the subscriber has
    /// caught up. `None` only if the reader task ended.
    pub async fn next(&mut self) -> Option<RecordedEvent> {
        self.rx.recv().await
    }

    /// When the reader last read the log successfully (Unix milliseconds),
    /// shared so a caller can report lag while the database is away.
    pub fn last_read(&self) -> Arc<AtomicI64> {
        self.last_read.clone()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl EventStore {
    /// Subscribes from `from` (1 = the beginning). A position past the head's
    /// successor is [`StoreError::UnknownPosition`].
    pub async fn subscribe(&self, from: Position) -> Result<Subscription, StoreError> {
        let from = from.max(1);
        let head = self.head().await?;
        if from > head + 1 {
            return Err(StoreError::UnknownPosition {
                requested: from,
                head,
            });
        }
        let (tx, rx) = mpsc::channel(BATCH * 2);
        let last_read = Arc::new(AtomicI64::new(now_ms()));
        let task = tokio::spawn(read_forever(self.clone(), from, tx, last_read.clone()));
        Ok(Subscription {
            rx,
            task,
            last_read,
        })
    }
}

async fn read_forever(
    store: EventStore,
    mut next: Position,
    tx: mpsc::Sender<RecordedEvent>,
    last_read: Arc<AtomicI64>,
) {
    let mut changes = store.changes();
    let poll = store.poll_interval();
    loop {
        // Mark the signal seen *before* reading, so an append that commits
        // during the read wakes the next wait instead of being slept through.
        changes.borrow_and_update();
        let read = store.read_all(next, BATCH).await;
        if read.is_ok() {
            last_read.store(now_ms(), Ordering::Relaxed);
        }
        match read {
            Ok(batch) if !batch.is_empty() => {
                for event in batch {
                    next = event.position + 1;
                    if tx.send(event).await.is_err() {
                        return;
                    }
                }
                continue;
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, next, "event log read failed; retrying"),
        }
        tokio::select! {
            _ = changes.changed() => {}
            _ = tokio::time::sleep(poll) => {}
            _ = tx.closed() => return,
        }
    }
}
