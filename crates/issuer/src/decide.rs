//! The one decide-and-append path: load what a decision needs, decide in the
//! domain, append with the versions the load saw; a lost race (another
//! writer appended to one of the streams meanwhile) loads and decides again,
//! at most [`ATTEMPTS`] times, and then answers `Conflict` (`ABORTED`) —
//! never a loop or a recursion without end.

use gatehouse_eventstore::{
    AppendResult, EventStore, ExpectedVersion, NewEvent, StoreError, StreamId,
};

use crate::error::IssuerError;

/// Most times one call decides; then `Conflict`.
pub const ATTEMPTS: usize = 5;
/// The bound for a stream that concurrent calls all append to without
/// contradicting each other (one user's logins each add a session to the
/// user's stream): as many as argon2 lets run at once on a large machine.
pub const CONTENDED_ATTEMPTS: usize = 64;

/// What one attempt decided.
pub(crate) enum Step<T> {
    /// Nothing to write: answer `T`.
    Done(T),
    /// Append these batches (all or nothing), then answer `T`.
    Append(Vec<(StreamId, ExpectedVersion, Vec<NewEvent>)>, T),
}

/// Runs `attempt` (load, then decide) and appends what it decided, again
/// after each lost race, at most [`ATTEMPTS`] times. Returns the answer and
/// what was written (nothing for [`Step::Done`]).
pub(crate) async fn decide_and_append<T, F, Fut>(
    store: &EventStore,
    attempt: F,
) -> Result<(T, Vec<AppendResult>), IssuerError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Step<T>, IssuerError>>,
{
    decide_and_append_within(store, ATTEMPTS, attempt).await
}

/// [`decide_and_append`] with its own bound on attempts.
pub(crate) async fn decide_and_append_within<T, F, Fut>(
    store: &EventStore,
    attempts: usize,
    mut attempt: F,
) -> Result<(T, Vec<AppendResult>), IssuerError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Step<T>, IssuerError>>,
{
    for lost in 0..attempts {
        match attempt().await? {
            Step::Done(answer) => return Ok((answer, Vec::new())),
            Step::Append(batches, answer) => match store.append_all(batches).await {
                Ok(written) => return Ok((answer, written)),
                Err(StoreError::WrongExpectedVersion { .. }) if lost + 1 < attempts => {
                    metrics::counter!("gatehouse_decision_conflicts_total").increment(1);
                    // A short jittered pause, growing with each lost race,
                    // so racers do not all come back at the same instant.
                    let jitter = gatehouse_crypto::random::bytes::<2>()
                        .map(u16::from_le_bytes)
                        .unwrap_or(0);
                    let bound = 200 * (lost as u64 + 1).min(10);
                    tokio::time::sleep(std::time::Duration::from_micros(u64::from(jitter) % bound))
                        .await;
                }
                Err(StoreError::WrongExpectedVersion { .. }) => break,
                Err(other) => return Err(other.into()),
            },
        }
    }
    metrics::counter!("gatehouse_decision_conflicts_total").increment(1);
    tracing::warn!(attempts, "a decision lost every race for its stream");
    Err(IssuerError::Conflict)
}

/// Waits (bounded, see [`EventStore::wait_for_local_readers`]) until this
/// process's readers have applied what a decision wrote, for the calls that
/// tighten (revoke, rotate away, retire): refused here before the caller
/// hears back.
pub(crate) async fn applied_here(store: &EventStore, written: &[AppendResult]) {
    if let Some(last) = written.iter().map(|w| w.last_position).max() {
        store.wait_for_local_readers(last).await;
    }
}

/// In-process turns on a stream, so that calls of this process which all
/// append to one stream (one user's logins, each adding a session to the
/// user's stream) queue for it instead of racing: optimistic retries alone
/// can starve one of sixteen racers for every attempt it has. Striped by a
/// hash of the stream id (a fixed, small table, whatever the number of
/// streams); other processes' writers still race and are retried.
pub(crate) struct StreamTurns {
    stripes: Box<[tokio::sync::Mutex<()>]>,
}

impl Default for StreamTurns {
    fn default() -> Self {
        Self {
            stripes: (0..256).map(|_| tokio::sync::Mutex::new(())).collect(),
        }
    }
}

impl StreamTurns {
    /// Waits for this process's turn on `stream`; the turn ends when the
    /// guard is dropped (also when the caller's request is cancelled).
    pub(crate) async fn take(&self, stream: &StreamId) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        stream.as_str().hash(&mut hasher);
        let stripe = usize::try_from(hasher.finish() % self.stripes.len() as u64).unwrap_or(0);
        self.stripes[stripe].lock().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_eventstore::StoreOptions;

    #[tokio::test]
    async fn a_race_lost_every_time_is_decided_a_bounded_number_of_times_then_conflict() {
        let dir = tempfile::tempdir().unwrap();
        let store = EventStore::open_sqlite(&dir.path().join("g.db"), StoreOptions::default())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let stream = StreamId::parse("session-raced").unwrap();
        let event = || NewEvent::new("Test.v1", serde_json::json!({}));
        store
            .append(&stream, ExpectedVersion::NoStream, vec![event()])
            .await
            .unwrap();
        // Each attempt decides from a version another writer has moved past.
        let attempts = &std::cell::Cell::new(0);
        let (store, stream) = (&store, &stream);
        let outcome = decide_and_append(store, || async move {
            attempts.set(attempts.get() + 1);
            store
                .append(stream, ExpectedVersion::Any, vec![event()])
                .await?;
            let stale = store.stream_version(stream).await? - 1;
            Ok(Step::Append(
                vec![(stream.clone(), ExpectedVersion::Exact(stale), vec![event()])],
                (),
            ))
        })
        .await;
        assert!(matches!(outcome, Err(IssuerError::Conflict)), "{outcome:?}");
        assert_eq!(attempts.get(), ATTEMPTS);
        assert_eq!(
            crate::error::IssuerError::Conflict.class(),
            crate::error::ErrorClass::Conflict,
            "answered ABORTED by both transports"
        );

        // A race lost once is decided again and lands.
        attempts.set(0);
        let (answer, written) = decide_and_append(store, || async move {
            attempts.set(attempts.get() + 1);
            let version = store.stream_version(stream).await?;
            if attempts.get() == 1 {
                store
                    .append(stream, ExpectedVersion::Any, vec![event()])
                    .await?;
            }
            Ok(Step::Append(
                vec![(
                    stream.clone(),
                    ExpectedVersion::Exact(version),
                    vec![event()],
                )],
                attempts.get(),
            ))
        })
        .await
        .unwrap();
        assert_eq!((answer, written.len()), (2, 1));
    }
}
