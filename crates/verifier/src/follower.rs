//! Keeps the index current from the event log.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use gatehouse_eventstore::{EventStore, StoreError};
use tokio::sync::{Mutex, watch};

use crate::index::Index;
use crate::snapshot;

/// Shortest time between two on-demand catch-ups: random well-formed secrets
/// cannot turn into a query stream against the database.
const CATCH_UP_EVERY: Duration = Duration::from_millis(100);
/// Longest a caller waits for an on-demand catch-up.
const CATCH_UP_WAIT: Duration = Duration::from_secs(1);
/// Revoked sessions are kept this much longer than the retention: it covers
/// the clock leeway a token's `exp` is given (at most 5 minutes) and skew
/// between the issuer that stamped `iat` and revocation and this clock.
const PRUNE_MARGIN: chrono::Duration = chrono::Duration::minutes(10);

/// When the index is written as a snapshot, and whether one is read.
#[derive(Debug, Clone, Copy)]
pub struct SnapshotPolicy {
    /// Write a snapshot once this many events were folded since the last
    /// one (including at start-up); 0: never write.
    pub every_events: u64,
    /// Start from the stored snapshot, if there is a usable one.
    pub load: bool,
    /// Revoked sessions are forgotten this long (plus a margin for clock
    /// leeway and skew) after their revocation.
    pub session_retention: Duration,
}

impl SnapshotPolicy {
    /// Sessions revoked before this may be forgotten at `now`; `None` when
    /// the retention reaches further back than time can be counted.
    pub fn prune_before(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        let retention = chrono::Duration::from_std(self.session_retention).ok()?;
        now.checked_sub_signed(retention)?
            .checked_sub_signed(PRUNE_MARGIN)
    }
}

impl Default for SnapshotPolicy {
    fn default() -> Self {
        Self {
            every_events: 100_000,
            load: true,
            session_retention: Duration::from_secs(24 * 3600),
        }
    }
}

/// Loads and tails the log into the index.
pub struct Follower {
    store: EventStore,
    index: Arc<RwLock<Index>>,
    applied: watch::Sender<u64>,
    /// Unix ms of the last successful read of the log.
    last_read: Arc<AtomicI64>,
    /// Serialises on-demand catch-ups and remembers when the last one ran.
    gate: Mutex<Option<Instant>>,
    policy: SnapshotPolicy,
    /// A snapshot is being written: the next waits for it.
    snapshotting: Arc<AtomicBool>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Follower {
    /// Loads `index` from the latest snapshot (if `policy` allows and one is
    /// usable) and the log after it, then tails the log until `stop`.
    pub async fn start(
        store: EventStore,
        index: Arc<RwLock<Index>>,
        policy: SnapshotPolicy,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<Arc<Self>, StoreError> {
        let started = Instant::now();
        if policy.load {
            load_snapshot(&store, &index, &policy).await;
        }
        let head = store.head().await?;
        let from = index.read().map(|i| i.position).unwrap_or(0) + 1;
        let mut progress =
            gatehouse_eventstore::Progress::new("verifier index", head.saturating_sub(from - 1));
        let next = store
            .read_to_head(from, |batch| {
                if let Ok(mut index) = index.write() {
                    batch.iter().for_each(|event| index.apply(event));
                }
                if let Some(last) = batch.last() {
                    progress.advance(batch.len(), last.position - (from - 1));
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
        // This process's revocations return once the index has them; the
        // tail task owns the sender, so a stopped tail is waited for no more.
        let (local, local_reader) = watch::channel(next - 1);
        store.register_local_reader(local_reader);
        let follower = Arc::new(Self {
            store,
            index,
            applied,
            last_read: subscription.last_read(),
            gate: Mutex::new(None),
            policy,
            snapshotting: Arc::new(AtomicBool::new(false)),
        });
        let mut since_snapshot = progress.events() as u64;
        let tail = follower.clone();
        tokio::spawn(async move {
            // A long replay at start-up is worth a snapshot at once; taken
            // here, it does not hold back serving.
            if tail.snapshot_due(since_snapshot) {
                tail.snapshot().await;
                since_snapshot = 0;
            }
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
                        local.send_replace(position);
                        since_snapshot += 1;
                        if tail.snapshot_due(since_snapshot) {
                            tail.snapshot().await;
                            since_snapshot = 0;
                        }
                    }
                }
            }
        });
        Ok(follower)
    }

    fn snapshot_due(&self, since: u64) -> bool {
        self.policy.every_events > 0
            && since >= self.policy.every_events
            && !self.snapshotting.load(Ordering::Acquire)
    }

    /// Prunes revoked sessions past retention, serializes the index and
    /// stores it in the background. Called by the only task that writes the
    /// index, which waits for the serialization: under the read lock
    /// `Verify` keeps answering, and no writer queues behind it (a queued
    /// writer would hold new readers back). New events wait that long.
    async fn snapshot(self: &Arc<Self>) {
        let started = Instant::now();
        let pruned = match (
            self.index.write(),
            self.policy.prune_before(chrono::Utc::now()),
        ) {
            (Ok(mut index), Some(before)) => index.prune_sessions(before),
            (Ok(_), None) => 0,
            (Err(_), _) => return,
        };
        let index = self.index.clone();
        let serialized = tokio::task::spawn_blocking(move || {
            let index = index.read().ok()?;
            Some((index.position, index.to_snapshot()))
        })
        .await;
        let Ok(Some((position, encoded))) = serialized else {
            return;
        };
        let data = match encoded {
            Ok(data) => data,
            Err(error) => {
                tracing::warn!(%error, "cannot encode the verifier index snapshot; keeping the last one");
                return;
            }
        };
        let serialize_time = started.elapsed();
        self.snapshotting.store(true, Ordering::Release);
        let this = self.clone();
        tokio::spawn(async move {
            match this
                .store
                .save_snapshot(snapshot::NAME, position, &data)
                .await
            {
                Ok(stored) => tracing::info!(
                    position,
                    bytes = data.len(),
                    pruned_sessions = pruned,
                    serialize = ?serialize_time,
                    elapsed = ?started.elapsed(),
                    stored,
                    "verifier index snapshot"
                ),
                Err(error) => {
                    tracing::warn!(%error, position, "could not store the index snapshot")
                }
            }
            this.snapshotting.store(false, Ordering::Release);
        });
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

/// Replaces `index` with the stored snapshot when there is a usable one.
/// Anything wrong with it (unreadable, another format, ahead of the log)
/// is logged and start-up replays the log instead: a snapshot only saves
/// time, it is never the only copy of anything.
async fn load_snapshot(store: &EventStore, index: &Arc<RwLock<Index>>, policy: &SnapshotPolicy) {
    let started = Instant::now();
    let stored = match store.load_snapshot(snapshot::NAME).await {
        Ok(Some(stored)) => stored,
        Ok(None) => return,
        Err(error) => {
            tracing::warn!(%error, "could not read the index snapshot; replaying the log");
            return;
        }
    };
    // The head after the snapshot was read: one stored meanwhile by another
    // verifier is not mistaken for one ahead of the log.
    let head = match store.head().await {
        Ok(head) => head,
        Err(error) => {
            tracing::warn!(%error, "could not read the log's head; replaying the log");
            return;
        }
    };
    if stored.position > head {
        tracing::warn!(
            snapshot = stored.position,
            head,
            "the index snapshot is ahead of the log (a restored database?); replaying the log"
        );
        return;
    }
    let (position, bytes) = (stored.position, stored.data.len());
    let Ok(empty) = index.read().map(|i| i.empty_like()) else {
        return;
    };
    let restored = tokio::task::spawn_blocking(move || empty.from_snapshot(stored.data)).await;
    match restored {
        // Pruned further than this verifier's retention allows: it would
        // accept tokens of sessions the snapshot has forgotten.
        Ok(Ok(restored))
            if restored.pruned_before().is_some_and(|pruned| {
                policy
                    .prune_before(chrono::Utc::now())
                    .is_none_or(|own| pruned > own)
            }) =>
        {
            tracing::warn!(
                "the index snapshot forgot revoked sessions this verifier's retention keeps; replaying the log"
            );
        }
        Ok(Ok(restored)) => {
            let keys = restored.key_count();
            if let Ok(mut index) = index.write() {
                *index = restored;
            }
            tracing::info!(
                position,
                bytes,
                keys,
                elapsed = ?started.elapsed(),
                "verifier index snapshot loaded"
            );
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, "the index snapshot is unusable; replaying the log")
        }
        Err(error) => {
            tracing::warn!(%error, "loading the index snapshot failed; replaying the log")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pruning_cut_off_keeps_a_margin_and_never_overflows() {
        let now = chrono::Utc::now();
        let policy = SnapshotPolicy {
            session_retention: Duration::from_secs(3600),
            ..Default::default()
        };
        assert_eq!(
            policy.prune_before(now),
            Some(now - chrono::Duration::hours(1) - PRUNE_MARGIN)
        );
        let forever = SnapshotPolicy {
            session_retention: Duration::MAX,
            ..Default::default()
        };
        assert_eq!(forever.prune_before(now), None);
    }
}
