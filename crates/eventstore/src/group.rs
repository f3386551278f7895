//! Group commit for Postgres appends.
//!
//! Appends hold the log's advisory lock until they commit, so that positions
//! become visible in order; the price is that only one append transaction
//! flushes the WAL at a time, and concurrent appends wait one flush each
//! (measured: 1,862 / 2,501 / 2,691 appends/s by 1 / 4 / 16 writers, the
//! lock the top wait event). A store therefore hands its appends to one committer task,
//! which takes every append that queued while the previous commit ran and
//! writes them in one transaction: one lock, one version query, one
//! multi-row insert, one flush.
//!
//! Each append keeps its own contract: its expectations are checked in queue
//! order against the versions the group has reached, and a failed check
//! fails that append alone. An append whose caller has gone (a cancelled
//! request) before its group is decided is not written; one whose caller
//! leaves after that may still be, as a commit in flight could be before.
//! If the database refuses one append's data, each append of the group is
//! retried alone, so only that one fails; if it fails otherwise, every
//! member gets the error at once (a group failing at COMMIT is never
//! retried: it may have been written).

use std::collections::HashMap;

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot, watch};

use crate::store::{Row, conflict_or, insert_rows_unnest, lock_appends, notify_appended};
use crate::types::ValidatedEvent;
use crate::{AppendResult, ExpectedVersion, StoreError, StreamId};

/// One append: streams with their expectations and events, all or nothing.
pub(crate) type Batches = Vec<(StreamId, ExpectedVersion, Vec<ValidatedEvent>)>;
type Outcome = Result<Vec<AppendResult>, StoreError>;

/// Most appends committed in one transaction; more wait for the next.
const MAX_GROUP: usize = 256;
/// Appends that may queue before callers wait to enqueue.
const QUEUE: usize = 4 * MAX_GROUP;

struct Pending {
    batches: Batches,
    reply: oneshot::Sender<Outcome>,
}

/// The sending side of a store's committer; the task ends when the last
/// sender (the store) is dropped.
pub(crate) struct Committer {
    queue: mpsc::Sender<Pending>,
}

impl Committer {
    /// Starts the committer task for `pool`, bumping `changes` after each
    /// group that wrote something.
    pub(crate) fn start(pool: PgPool, changes: watch::Sender<u64>) -> Self {
        let (queue, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(run(pool, changes, receiver));
        Self { queue }
    }

    /// Appends through the next group; the result is this append's alone.
    pub(crate) async fn append(&self, batches: Batches) -> Outcome {
        let (reply, answer) = oneshot::channel();
        // Not queued: nothing was written, the caller may retry.
        self.queue
            .send(Pending { batches, reply })
            .await
            .map_err(|_| StoreError::Database(sqlx::Error::PoolClosed))?;
        // Queued but never answered (the task died): it may have been
        // written, so this must not read as "unavailable, retry".
        answer
            .await
            .map_err(|_| StoreError::Database(sqlx::Error::WorkerCrashed))?
    }
}

/// How a group's transaction failed.
enum Failed {
    /// Before COMMIT was sent: nothing was written.
    Before(StoreError),
    /// At COMMIT: the group may or may not have been written.
    AtCommit(StoreError),
}

/// What became of one append of a group.
enum Decision {
    Written(Vec<AppendResult>),
    Refused(StoreError),
    /// Its caller left before the group was decided: not written, no answer.
    Gone,
}

async fn run(pool: PgPool, changes: watch::Sender<u64>, mut queue: mpsc::Receiver<Pending>) {
    let mut received = Vec::with_capacity(MAX_GROUP);
    while queue.recv_many(&mut received, MAX_GROUP).await > 0 {
        // A caller that gave up before its append began is not written.
        let group: Vec<Pending> = received
            .drain(..)
            .filter(|p| !p.reply.is_closed())
            .collect();
        if group.is_empty() {
            continue;
        }
        metrics::histogram!("gatehouse_append_group_size").record(group.len() as f64);
        match commit(&pool, &group).await {
            Ok(decisions) => answer(&changes, group.into_iter().zip(decisions)),
            // Ambiguous for every member: each is told so, none retried (a
            // retry could write an append twice, or report a written one as
            // a conflict).
            Err(Failed::AtCommit(error)) => {
                changes.send_modify(|n| *n = n.wrapping_add(1));
                for pending in group {
                    let _ = pending.reply.send(Err(copy(&error)));
                }
            }
            // One append's data was refused by the database (a constraint,
            // a value it cannot store): retry each alone, so that only that
            // append fails and each caller gets its own error.
            Err(Failed::Before(error)) if group.len() > 1 && refused_data(&error) => {
                for pending in group {
                    if pending.reply.is_closed() {
                        continue;
                    }
                    let alone = std::slice::from_ref(&pending);
                    let decision = match commit(&pool, alone).await {
                        Ok(mut decisions) => decisions.pop().unwrap_or(Decision::Gone),
                        Err(Failed::Before(error)) => {
                            Decision::Refused(commit_conflict(error, &pending.batches))
                        }
                        Err(Failed::AtCommit(error)) => Decision::Refused(error),
                    };
                    answer(&changes, std::iter::once((pending, decision)));
                }
            }
            // Nothing was written (the database unreachable, the lock not
            // taken, …): every member gets the error at once.
            Err(Failed::Before(error)) => {
                if let [pending] = &group[..] {
                    let error = commit_conflict(error, &pending.batches);
                    if let Some(pending) = group.into_iter().next() {
                        let _ = pending.reply.send(Err(error));
                    }
                    continue;
                }
                for pending in group {
                    let _ = pending.reply.send(Err(copy(&error)));
                }
            }
        }
    }
}

/// Tells each caller its append's fate; signals readers first if any was
/// written, as a single append did before its caller heard back.
fn answer(changes: &watch::Sender<u64>, decided: impl Iterator<Item = (Pending, Decision)>) {
    let decided: Vec<_> = decided.collect();
    if decided
        .iter()
        .any(|(_, d)| matches!(d, Decision::Written(_)))
    {
        changes.send_modify(|n| *n = n.wrapping_add(1));
    }
    for (pending, decision) in decided {
        let outcome = match decision {
            Decision::Written(results) => Ok(results),
            Decision::Refused(error) => Err(error),
            Decision::Gone => continue,
        };
        let _ = pending.reply.send(outcome);
    }
}

/// A unique violation is a lost race on a stream version (the typed
/// conflict, as before); otherwise the database error itself.
fn commit_conflict(error: StoreError, batches: &Batches) -> StoreError {
    match (error, batches.first()) {
        (StoreError::Database(error), Some((stream, expected, _))) => {
            conflict_or(error, stream, *expected)
        }
        (error, _) => error,
    }
}

/// Whether the database refused a statement for its data (SQLSTATE classes
/// 22, data exception, and 23, integrity constraint), which one append of
/// a group can cause, rather than being unreachable.
fn refused_data(error: &StoreError) -> bool {
    matches!(error, StoreError::Database(_)) && error.is_refused_content()
}

/// The same failure for another caller (errors are not `Clone`): kept as
/// "unavailable" when it was, so callers answer UNAVAILABLE, not INTERNAL.
fn copy(error: &StoreError) -> StoreError {
    match error {
        StoreError::Database(sqlx::Error::PoolTimedOut) => {
            StoreError::Database(sqlx::Error::PoolTimedOut)
        }
        StoreError::Database(sqlx::Error::PoolClosed) => {
            StoreError::Database(sqlx::Error::PoolClosed)
        }
        other if other.is_unavailable() => StoreError::Database(sqlx::Error::PoolTimedOut),
        StoreError::Database(sqlx::Error::Io(io)) => StoreError::Database(sqlx::Error::Io(
            std::io::Error::new(io.kind(), io.to_string()),
        )),
        other => StoreError::Database(sqlx::Error::Protocol(other.to_string())),
    }
}

/// Writes `group` in one transaction: each append's decision (a failed
/// expectation fails only its append), or how the transaction failed.
async fn commit(pool: &PgPool, group: &[Pending]) -> Result<Vec<Decision>, Failed> {
    let before = |e: StoreError| Failed::Before(e);
    let mut tx = pool.begin().await.map_err(|e| before(e.into()))?;
    lock_appends(&mut tx).await.map_err(before)?;

    let mut names: Vec<&str> = group
        .iter()
        .flat_map(|p| p.batches.iter().map(|(stream, _, _)| stream.as_str()))
        .collect();
    names.sort_unstable();
    names.dedup();
    // A MAX per stream (not one GROUP BY), so each is one backward step of
    // the (stream_id, stream_version) index however long the stream is.
    let found: Vec<(String, i64)> = sqlx::query_as(
        "SELECT s.id, COALESCE((SELECT MAX(stream_version) FROM events \
         WHERE stream_id = s.id), 0) FROM UNNEST($1::TEXT[]) AS s(id)",
    )
    .bind(&names)
    .fetch_all(&mut *tx)
    .await
    .map_err(|e| before(e.into()))?;
    let mut versions: HashMap<&str, u64> = names.iter().map(|n| (*n, 0)).collect();
    for (stream, version) in &found {
        if let Some(v) = versions.get_mut(stream.as_str()) {
            *v = u64::try_from(*version).unwrap_or(0);
        }
    }
    let initial = versions.clone();

    // Decide each append in queue order; rows of the accepted ones. A caller
    // that left meanwhile is not written (as a dropped transaction was not).
    let mut refusals: Vec<Option<Decision>> = Vec::with_capacity(group.len());
    let mut rows: Vec<Row<'_>> = Vec::new();
    for pending in group {
        if pending.reply.is_closed() {
            refusals.push(Some(Decision::Gone));
            continue;
        }
        let mut reached: Vec<(&str, u64)> = Vec::new();
        let mut refused = None;
        for (stream, expected, events) in &pending.batches {
            let actual = reached
                .iter()
                .rev()
                .find(|(s, _)| *s == stream.as_str())
                .map_or(versions[stream.as_str()], |(_, v)| *v);
            if let Err(error) = expected.check(stream, actual) {
                refused = Some(Decision::Refused(error));
                break;
            }
            reached.push((stream.as_str(), actual + events.len() as u64));
        }
        if refused.is_none() {
            for (stream, _, events) in &pending.batches {
                let base = versions[stream.as_str()];
                for (i, event) in events.iter().enumerate() {
                    rows.push((stream, (base + 1 + i as u64) as i64, event));
                }
                versions.insert(stream.as_str(), base + events.len() as u64);
            }
        }
        refusals.push(refused);
    }

    let mut positions: HashMap<(&str, i64), u64> = HashMap::with_capacity(rows.len());
    for (stream, version, position) in insert_rows_unnest(&mut tx, &rows).await.map_err(before)? {
        if let Ok(i) = names.binary_search(&stream.as_str()) {
            positions.insert((names[i], version), u64::try_from(position).unwrap_or(0));
        }
    }
    if !rows.is_empty() {
        let last = positions.values().copied().max().unwrap_or(0);
        notify_appended(&mut tx, last).await.map_err(before)?;
        tx.commit().await.map_err(|e| Failed::AtCommit(e.into()))?;
    }

    // Each accepted append's positions and versions, from what was written.
    let mut decisions = Vec::with_capacity(group.len());
    let mut at = initial;
    for (pending, refused) in group.iter().zip(refusals) {
        if let Some(decision) = refused {
            decisions.push(decision);
            continue;
        }
        let mut appended = Vec::with_capacity(pending.batches.len());
        for (stream, _, events) in &pending.batches {
            let name = stream.as_str();
            let before = at[name];
            let last = before + events.len() as u64;
            at.insert(name, last);
            let position = |v: u64| positions.get(&(name, v as i64)).copied().unwrap_or(0);
            appended.push(AppendResult {
                first_position: position(before + 1),
                last_position: position(last),
                stream_version: last,
            });
        }
        decisions.push(Decision::Written(appended));
    }
    Ok(decisions)
}
