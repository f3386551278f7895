//! Keeps the index current from the event log.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use gatehouse_eventstore::{EventStore, StoreError};
use tokio::sync::{Mutex, watch};

use crate::index::Index;

/// Shortest time between two on-demand catch-ups: random well-formed secrets
/// cannot turn into a query stream against the database.
const CATCH_UP_EVERY: Duration = Duration::from_millis(100);
/// Longest a caller waits for an on-demand catch-up.
const CATCH_UP_WAIT: Duration = Duration::from_secs(1);

/// Loads and tails the log into the index.
pub struct Follower {
    store: EventStore,
    index: Arc<RwLock<Index>>,
    applied: watch::Sender<u64>,
    /// Unix ms of the last successful read of the log.
    last_read: Arc<AtomicI64>,
    /// Serialises on-demand catch-ups and remembers when the last one ran.
    gate: Mutex<Option<Instant>>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Follower {
    /// Folds the whole log into `index`, then tails it until `stop` resolves.
    pub async fn start(
        store: EventStore,
        index: Arc<RwLock<Index>>,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<Arc<Self>, StoreError> {
        let started = Instant::now();
        let mut progress =
            gatehouse_eventstore::Progress::new("verifier index", store.head().await?);
        let next = store
            .read_to_head(1, |batch| {
                if let Ok(mut index) = index.write() {
                    batch.iter().for_each(|event| index.apply(event));
                }
                if let Some(last) = batch.last() {
                    progress.advance(batch.len(), last.position);
                }
            })
            .await?;
        let keys = index.read().map(|i| i.key_count()).unwrap_or(0);
        tracing::info!(
            position = next - 1,
            events = progress.events(),
            keys,
            elapsed = ?started.elapsed(),
            "verifier index loaded"
        );
        let mut subscription = store.subscribe(next).await?;
        let (applied, _) = watch::channel(next - 1);
        let follower = Arc::new(Self {
            store,
            index,
            applied,
            last_read: subscription.last_read(),
            gate: Mutex::new(None),
        });
        let tail = follower.clone();
        tokio::spawn(async move {
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    () = &mut stop => return,
                    event = subscription.next() => {
                        let Some(event) = event else { return };
                        let position = event.position;
                        if let Ok(mut index) = tail.index.write() {
                            index.apply(&event);
                        }
                        tail.applied.send_replace(position);
                    }
                }
            }
        });
        Ok(follower)
    }

    /// How long since the log was last read successfully.
    pub fn lag(&self) -> Duration {
        let ms = now_ms().saturating_sub(self.last_read.load(Ordering::Relaxed));
        Duration::from_millis(u64::try_from(ms).unwrap_or(0))
    }

    /// The last position folded into the index.
    pub fn position(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Brings the index up to the log's head, for a caller about to refuse an
    /// unknown key. Coalesced: a catch-up that started after the caller asked
    /// covers it. Rate-limited: one database read per [`CATCH_UP_EVERY`]; a
    /// caller arriving sooner waits for the next slot, so a key created a moment
    /// ago is still found while random well-formed secrets cost the database
    /// at most ten small reads a second. Returns whether it caught up.
    pub async fn catch_up(&self) -> bool {
        let requested = Instant::now();
        let mut gate = self.gate.lock().await;
        if let Some(last) = *gate {
            if last >= requested {
                return true;
            }
            let since = last.elapsed();
            if since < CATCH_UP_EVERY {
                tokio::time::sleep(CATCH_UP_EVERY - since).await;
            }
        }
        *gate = Some(Instant::now());
        let head = match tokio::time::timeout(CATCH_UP_WAIT, self.store.head()).await {
            Ok(Ok(head)) => head,
            _ => return false,
        };
        let mut applied = self.applied.subscribe();
        let reached = tokio::time::timeout(CATCH_UP_WAIT, applied.wait_for(|p| *p >= head)).await;
        matches!(reached, Ok(Ok(_)))
    }
}
