//! Catch-up-then-live subscriptions over the global log.

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
        let task = tokio::spawn(read_forever(self.clone(), from, tx));
        Ok(Subscription { rx, task })
    }
}

async fn read_forever(store: EventStore, mut next: Position, tx: mpsc::Sender<RecordedEvent>) {
    let mut changes = store.changes();
    let poll = store.poll_interval();
    loop {
        // Mark the signal seen *before* reading, so an append that commits
        // during the read wakes the next wait instead of being slept through.
        changes.borrow_and_update();
        match store.read_all(next, BATCH).await {
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
