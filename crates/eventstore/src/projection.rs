//! Projections: read models folded from the log, each with a checkpoint
//! written in the same transaction, so every event takes effect exactly once.

use std::future::Future;

use crate::{EventStore, Position, RecordedEvent, StoreError, StoreTx, on_backend};

/// A read model kept from the event log.
pub trait Projection: Send + Sync + 'static {
    /// Stable name; the checkpoint's key and the argument of
    /// `gatehouse projections rebuild NAME`.
    fn name(&self) -> &'static str;

    /// Folds one event into the read model, inside the runner's transaction.
    fn apply(
        &self,
        tx: &mut StoreTx,
        event: &RecordedEvent,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Deletes the whole read model, before a rebuild.
    fn reset(&self, tx: &mut StoreTx) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// What one step of the runner did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Applied a batch and moved the checkpoint to `checkpoint`.
    Applied { events: usize, checkpoint: Position },
    /// Nothing new in the log.
    Idle,
}

/// How long a background runner lets appends gather after a wake-up.
const GATHER: std::time::Duration = std::time::Duration::from_millis(20);

/// Drives one projection: read a batch past the checkpoint, apply it, move the
/// checkpoint, commit — all in one transaction. Several runners of the same
/// projection (one per issuer replica) are safe: the checkpoint row is locked
/// for the step.
pub struct ProjectionRunner<P> {
    store: EventStore,
    projection: P,
    batch_size: usize,
    /// One step at a time in this process: callers catching up at once wait
    /// here (and then find little to do) instead of each reading a batch and
    /// holding a pooled connection while they wait for the checkpoint lock.
    /// Holds when the last step ended finding the database unavailable
    /// (`None`: it did not).
    step: tokio::sync::Mutex<Option<std::time::Instant>>,
}

impl<P: Projection> ProjectionRunner<P> {
    pub fn new(store: EventStore, projection: P) -> Self {
        Self {
            store,
            projection,
            batch_size: 500,
            step: tokio::sync::Mutex::new(None),
        }
    }

    /// One step: applies at most one batch. The batch is read before the
    /// checkpoint is locked, never while a transaction holds a connection:
    /// with many callers at once, a transaction waiting for a second
    /// connection while the others wait for its lock drained the pool.
    ///
    /// A caller that waited behind a step which found the database
    /// unavailable is answered so at once: in an outage it would otherwise
    /// wait out the pool's acquire timeout twice, once in the queue and
    /// once for itself.
    pub async fn try_execute(&self) -> Result<Outcome, StoreError> {
        let asked = std::time::Instant::now();
        let mut unavailable = self.step.lock().await;
        // Only a failure that ended while this caller waited: an older one
        // (or a step cancelled since) says nothing of the database now.
        if unavailable.is_some_and(|at| at >= asked) {
            return Err(StoreError::Database(sqlx::Error::PoolTimedOut));
        }
        let result = self.step_locked().await;
        *unavailable = match &result {
            Err(error) if error.is_unavailable() => Some(std::time::Instant::now()),
            _ => None,
        };
        result
    }

    async fn step_locked(&self) -> Result<Outcome, StoreError> {
        let seen = self.checkpoint().await?;
        let events = self.store.read_all(seen + 1, self.batch_size).await?;
        let Some(last) = events.last().map(|e| e.position) else {
            return Ok(Outcome::Idle);
        };
        let mut tx = self.store.begin().await?;
        let checkpoint = lock_checkpoint(&mut tx, self.projection.name()).await?;
        if checkpoint != seen {
            // Another runner applied this batch meanwhile: look again.
            tx.commit().await?;
            return Ok(Outcome::Applied {
                events: 0,
                checkpoint,
            });
        }
        for event in &events {
            self.projection.apply(&mut tx, event).await?;
        }
        save_checkpoint(&mut tx, self.projection.name(), last).await?;
        tx.commit().await?;
        Ok(Outcome::Applied {
            events: events.len(),
            checkpoint: last,
        })
    }

    /// Steps until the log has nothing new; returns the checkpoint.
    pub async fn run_until_caught_up(&self) -> Result<Position, StoreError> {
        loop {
            if self.try_execute().await? == Outcome::Idle {
                return self.checkpoint().await;
            }
        }
    }

    /// The projection's checkpoint (0 = nothing applied), read without a lock.
    pub async fn checkpoint(&self) -> Result<Position, StoreError> {
        let mut tx = self.store.begin_read().await?;
        const SELECT: &str = "SELECT position FROM projection_checkpoints WHERE name = $1";
        let position: Option<i64> = on_backend!(&mut tx, |conn| sqlx::query_scalar(SELECT)
            .bind(self.projection.name())
            .fetch_optional(conn)
            .await)?;
        tx.commit().await?;
        Ok(position.and_then(|p| u64::try_from(p).ok()).unwrap_or(0))
    }

    /// Deletes the read model and replays the whole log into it, in one
    /// transaction: readers see the old model until the new one is complete.
    pub async fn rebuild(&self) -> Result<Position, StoreError> {
        let mut tx = self.store.begin().await?;
        lock_checkpoint(&mut tx, self.projection.name()).await?;
        self.projection.reset(&mut tx).await?;
        let mut checkpoint = 0;
        let mut progress = crate::Progress::new(self.projection.name(), self.store.head().await?);
        loop {
            let events = self.store.read_all(checkpoint + 1, self.batch_size).await?;
            let Some(last) = events.last().map(|e| e.position) else {
                break;
            };
            for event in &events {
                self.projection.apply(&mut tx, event).await?;
            }
            checkpoint = last;
            progress.advance(events.len(), last);
        }
        save_checkpoint(&mut tx, self.projection.name(), checkpoint).await?;
        tx.commit().await?;
        // Shown through the commit (a long one still ticks), cleared before
        // the caller reports.
        progress.finish();
        Ok(checkpoint)
    }

    /// Runs until `shutdown` resolves, waking on appends and every poll
    /// interval. Errors are logged and retried: a database outage pauses the
    /// projection, it does not end it.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let mut changes = self.store.changes();
        let poll = self.store.poll_interval();
        tokio::pin!(shutdown);
        loop {
            changes.borrow_and_update();
            match self.try_execute().await {
                // A full batch (more may follow), or another runner moved
                // the checkpoint: look again at once. A shorter batch read
                // up to the head; what came since has marked `changes`.
                Ok(Outcome::Applied { events, .. }) if events == 0 || events >= self.batch_size => {
                    continue;
                }
                Ok(Outcome::Applied { .. } | Outcome::Idle) => {}
                Err(error) => {
                    tracing::warn!(projection = self.projection.name(), %error, "projection step failed")
                }
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = changes.changed() => {}
                _ = tokio::time::sleep(poll) => {}
            }
            // Let a burst of appends gather: folded as one batch, with one
            // checkpoint commit, instead of a step (five statements) per
            // append for each projection. Readers that must see their
            // writes catch up themselves (`run_until_caught_up`).
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(GATHER) => {}
            }
        }
    }
}

/// Ensures the checkpoint row exists and locks it for this transaction.
async fn lock_checkpoint(tx: &mut StoreTx, name: &str) -> Result<Position, StoreError> {
    const INSERT: &str = "INSERT INTO projection_checkpoints (name, position) VALUES ($1, 0) \
                          ON CONFLICT (name) DO NOTHING";
    on_backend!(tx, |conn| sqlx::query(INSERT)
        .bind(name)
        .execute(conn)
        .await
        .map(|_| ()))?;
    let position: i64 = match tx {
        StoreTx::Postgres(tx) => {
            sqlx::query_scalar(
                "SELECT position FROM projection_checkpoints WHERE name = $1 FOR UPDATE",
            )
            .bind(name)
            .fetch_one(&mut **tx)
            .await?
        }
        // BEGIN IMMEDIATE already holds SQLite's single write lock.
        StoreTx::Sqlite(tx) => {
            sqlx::query_scalar("SELECT position FROM projection_checkpoints WHERE name = $1")
                .bind(name)
                .fetch_one(&mut **tx)
                .await?
        }
    };
    Ok(u64::try_from(position).unwrap_or(0))
}

async fn save_checkpoint(
    tx: &mut StoreTx,
    name: &str,
    position: Position,
) -> Result<(), StoreError> {
    const UPDATE: &str = "UPDATE projection_checkpoints SET position = $2, updated_at = CURRENT_TIMESTAMP \
                          WHERE name = $1";
    let position = i64::try_from(position).unwrap_or(i64::MAX);
    on_backend!(tx, |conn| sqlx::query(UPDATE)
        .bind(name)
        .bind(position)
        .execute(conn)
        .await
        .map(|_| ()))?;
    Ok(())
}
