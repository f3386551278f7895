//! [`EventStore`]: one contract over two backends — `postgres` and
//! `sqlite` hold what differs (connecting, appending, locking), `sql` the
//! SQL they share; reads and transactions are here, once.
//!
//! Appends are serialised (Postgres: a transaction-scoped advisory lock;
//! SQLite: one writer connection with `BEGIN IMMEDIATE`), so positions become
//! visible in increasing order and a reader never passes over an event that a
//! slower transaction commits later — the sequence-gap problem. On Postgres,
//! concurrent appends of one process share a transaction (`crate::group`),
//! so the lock costs one WAL flush per group rather than per append.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgPool, SqlitePool};
use tokio::sync::watch;

use crate::group::Committer;
use crate::types::validate;

mod migrations;
mod postgres;
mod sql;
mod sqlite;

use crate::{ExpectedVersion, Metadata, NewEvent, Position, RecordedEvent, StoreError, StreamId};
pub(crate) use postgres::{lock_appends, notify_appended};
pub(crate) use sql::{Row, conflict_or, insert_rows, insert_rows_unnest};
use sqlite::lock_file;

/// Largest page a single read returns.
pub const MAX_READ_LIMIT: usize = 10_000;

const SELECT_EVENT: &str = "SELECT position, stream_id, stream_version, event_type, \
     CAST(payload AS TEXT), CAST(metadata AS TEXT), occurred_at FROM events";

type EventRow = (i64, String, i64, String, String, String, DateTime<Utc>);

/// Connection settings shared by both backends.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Most pooled connections (Postgres; SQLite readers).
    pub max_connections: u32,
    /// How often a subscriber reads the log even without a notification, which
    /// bounds the delay a lost notification can cause.
    pub poll_interval: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            poll_interval: Duration::from_millis(500),
        }
    }
}

/// The result of a successful append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendResult {
    /// Position of the first event written.
    pub first_position: Position,
    /// Position of the last event written.
    pub last_position: Position,
    /// The stream's version after the append.
    pub stream_version: u64,
}

/// The append-only event log. Cheap to clone; clones share pools and the
/// change signal.
#[derive(Clone)]
pub struct EventStore {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    /// Bumped whenever new events may be readable; subscribers wait on it.
    changes: watch::Sender<u64>,
    poll_interval: Duration,
    /// Keeps the Postgres `LISTEN` task alive exactly as long as the store.
    _listener: Option<AbortOnDrop>,
    /// How far each reader of this process (its verifier) has applied the
    /// log, for [`EventStore::wait_for_local_readers`].
    local_readers: std::sync::Mutex<Vec<watch::Receiver<u64>>>,
    /// The last write probe and whether it passed: probes run one at a time
    /// and are reused for a second, so a flood of readiness checks cannot
    /// queue ahead of real writes.
    write_probe: tokio::sync::Mutex<Option<(std::time::Instant, bool)>>,
    /// Single-stream reads made (see [`EventStore::stream_reads`]).
    stream_reads: std::sync::atomic::AtomicU64,
}

/// Longest a revocation waits for this process's readers to apply it; past
/// it the call returns anyway (the propagation bound then applies).
const LOCAL_READERS_WAIT: Duration = Duration::from_millis(500);

pub(crate) enum Backend {
    Postgres {
        pool: PgPool,
        /// Commits concurrent appends together (see `crate::group`).
        committer: Committer,
    },
    Sqlite {
        /// One connection: SQLite has one writer, and queueing here instead of
        /// in `SQLITE_BUSY` retries keeps appends fair.
        writer: SqlitePool,
        reader: SqlitePool,
        /// The database file, whose lock file serialises migrations across
        /// processes; `None` in memory.
        path: Option<std::path::PathBuf>,
    },
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl std::fmt::Debug for EventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStore")
            .field("backend", &self.backend_name())
            .finish_non_exhaustive()
    }
}

/// A transaction on the store's database, for projections that write their
/// read model and checkpoint together. Use [`crate::on_backend!`] to run SQL
/// on it.
pub enum StoreTx {
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
}

impl StoreTx {
    /// Commits the transaction on a task of its own (see [`detached`]): a
    /// caller that stops waiting cannot leave the COMMIT half-done.
    pub async fn commit(self) -> Result<(), StoreError> {
        detached(async move {
            match self {
                Self::Postgres(tx) => tx.commit().await?,
                Self::Sqlite(tx) => tx.commit().await?,
            }
            Ok(())
        })
        .await
    }
}

/// Runs `$body` with `$conn` bound to the transaction's connection, once per
/// backend, so one SQL text (with `$1`-style parameters, which both accept)
/// serves Postgres and SQLite.
#[macro_export]
macro_rules! on_backend {
    ($tx:expr, |$conn:ident| $body:expr) => {
        match $tx {
            $crate::StoreTx::Postgres(tx) => {
                let $conn = &mut **tx;
                $body
            }
            $crate::StoreTx::Sqlite(tx) => {
                let $conn = &mut **tx;
                $body
            }
        }
    };
}

impl EventStore {
    /// Connects by URL: `postgres://…`/`postgresql://…` or `sqlite:PATH`.
    pub async fn connect(url: &str, options: StoreOptions) -> Result<Self, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Self::connect_postgres(url, options).await
        } else if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            Self::open_sqlite(Path::new(path), options).await
        } else {
            Err(StoreError::UnsupportedUrl)
        }
    }

    /// `"postgres"` or `"sqlite"`.
    pub fn backend_name(&self) -> &'static str {
        match self.inner.backend {
            Backend::Postgres { .. } => "postgres",
            Backend::Sqlite { .. } => "sqlite",
        }
    }

    /// Applies the schema migrations of this backend. Safe to run from several
    /// processes at once: on Postgres sqlx takes an advisory lock; on SQLite,
    /// where sqlx takes none, an exclusive lock on `<database>.migrate.lock`
    /// makes the others wait and then find the schema applied.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.inner.backend {
            Backend::Postgres { pool, .. } => {
                migrations::POSTGRES.migrator().await?.run(pool).await?
            }
            Backend::Sqlite { writer, path, .. } => {
                let _lock = match path {
                    Some(path) => Some(lock_file(path).await.map_err(StoreError::DataDir)?),
                    None => None,
                };
                migrations::SQLITE.migrator().await?.run(writer).await?;
            }
        }
        Ok(())
    }

    /// Appends `events` to `stream` if the stream is at `expected`; all or nothing.
    #[tracing::instrument(skip_all, fields(stream = %stream, count = events.len()), err(level = "debug"))]
    pub async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        let mut results = self
            .append_all(vec![(stream.clone(), expected, events)])
            .await?;
        results.pop().ok_or(StoreError::EmptyAppend)
    }

    /// Appends to several streams in one transaction: all or nothing. Each
    /// stream's expectation is checked as in [`EventStore::append`]; one
    /// failure writes nothing (e.g. a user and the claim on their username).
    pub async fn append_all(
        &self,
        batches: Vec<(StreamId, ExpectedVersion, Vec<NewEvent>)>,
    ) -> Result<Vec<AppendResult>, StoreError> {
        self.append_unseen(batches).await
    }

    /// Registers a reader of this process (a verifier's index) by the
    /// position it has applied; a closed channel (the reader stopped) is
    /// waited for no more.
    pub fn register_local_reader(&self, applied: watch::Receiver<u64>) {
        if let Ok(mut readers) = self.inner.local_readers.lock() {
            readers.push(applied);
        }
    }

    /// Waits (bounded) until every local reader has applied `position`: a
    /// call that revoked something returns only once this process refuses
    /// it. Only revocations wait (a wait after the commit is time in which a
    /// caller's deadline could answer a committed write with an error).
    pub async fn wait_for_local_readers(&self, position: Position) {
        let readers: Vec<watch::Receiver<u64>> = match self.inner.local_readers.lock() {
            Ok(readers) => readers.clone(),
            Err(_) => return,
        };
        for mut reader in readers {
            if *reader.borrow() >= position || reader.has_changed().is_err() {
                continue;
            }
            let reached = tokio::time::timeout(
                LOCAL_READERS_WAIT,
                reader.wait_for(|applied| *applied >= position),
            )
            .await;
            if reached.is_err() {
                tracing::debug!(position, "a local reader did not apply an append in time");
            }
        }
    }

    /// [`EventStore::append_all`]'s work.
    async fn append_unseen(
        &self,
        batches: Vec<(StreamId, ExpectedVersion, Vec<NewEvent>)>,
    ) -> Result<Vec<AppendResult>, StoreError> {
        if batches.is_empty() {
            return Err(StoreError::EmptyAppend);
        }
        let batches = batches
            .into_iter()
            .map(|(stream, expected, events)| Ok((stream, expected, validate(events)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let writer = match &self.inner.backend {
            // The committer task writes it: out of the caller's reach already.
            Backend::Postgres { committer, .. } => return committer.append(batches).await,
            Backend::Sqlite { writer, .. } => writer.clone(),
        };
        let inner = self.inner.clone();
        detached(async move {
            let results = sqlite::append(&writer, &batches).await?;
            inner.changes.send_modify(|n| *n = n.wrapping_add(1));
            Ok(results)
        })
        .await
    }

    /// Bulk load for imports and benchmarks: writes streams that do not
    /// exist yet, each event at its version (1, 2, …), many rows per
    /// statement, all in one transaction. The `(stream_id, stream_version)`
    /// constraint refuses the whole load if any stream already exists, so it
    /// never breaks a stream's history; it does skip the per-stream version
    /// read that makes [`EventStore::append_all`] safe under concurrency, so
    /// it is not for live writes. Returns the number of events written.
    pub async fn load_new_streams(
        &self,
        streams: Vec<(StreamId, Vec<NewEvent>)>,
    ) -> Result<u64, StoreError> {
        let mut rows = Vec::new();
        for (stream, events) in streams {
            for (n, event) in validate(events)?.into_iter().enumerate() {
                rows.push((stream.clone(), n as i64 + 1, event));
            }
        }
        let written = rows.len() as u64;
        let inner = self.inner.clone();
        detached(async move {
            let rows: Vec<Row<'_>> = rows.iter().map(|(s, v, e)| (s, *v, e)).collect();
            match &inner.backend {
                Backend::Postgres { pool, .. } => {
                    let mut tx = pool.begin().await?;
                    lock_appends(&mut tx).await?;
                    insert_rows_unnest(&mut tx, &rows).await?;
                    notify_appended(&mut tx, 0).await?;
                    tx.commit().await?;
                }
                Backend::Sqlite { writer, .. } => {
                    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
                    insert_rows(&mut tx, &rows).await?;
                    tx.commit().await?;
                }
            }
            inner.changes.send_modify(|n| *n = n.wrapping_add(1));
            Ok(written)
        })
        .await
    }

    /// Every event of one stream, in version order.
    pub async fn read_stream(&self, stream: &StreamId) -> Result<Vec<RecordedEvent>, StoreError> {
        self.count_stream_read();
        let sql = format!("{SELECT_EVENT} WHERE stream_id = $1 ORDER BY stream_version");
        let rows: Vec<EventRow> = match &self.inner.backend {
            Backend::Postgres { pool, .. } => {
                sqlx::query_as(&sql)
                    .bind(stream.as_str())
                    .fetch_all(pool)
                    .await?
            }
            Backend::Sqlite { reader, .. } => {
                sqlx::query_as(&sql)
                    .bind(stream.as_str())
                    .fetch_all(reader)
                    .await?
            }
        };
        rows.into_iter().map(decode_row).collect()
    }

    /// The stream's current version; 0 if it does not exist.
    pub async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError> {
        self.count_stream_read();
        const SQL: &str =
            "SELECT COALESCE(MAX(stream_version), 0) FROM events WHERE stream_id = $1";
        let version: i64 = match &self.inner.backend {
            Backend::Postgres { pool, .. } => {
                sqlx::query_scalar(SQL)
                    .bind(stream.as_str())
                    .fetch_one(pool)
                    .await?
            }
            Backend::Sqlite { reader, .. } => {
                sqlx::query_scalar(SQL)
                    .bind(stream.as_str())
                    .fetch_one(reader)
                    .await?
            }
        };
        Ok(to_u64(version))
    }

    /// How many single-stream reads (a stream's events or its version) this
    /// store has made: what a decision that loads its streams costs, and
    /// what one answered from memory must not add to.
    pub fn stream_reads(&self) -> u64 {
        self.inner
            .stream_reads
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn count_stream_read(&self) {
        self.inner
            .stream_reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Up to `limit` events with position ≥ `from`, in position order. Reading
    /// from just past the head returns nothing; from further on is
    /// [`StoreError::UnknownPosition`].
    pub async fn read_all(
        &self,
        from: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        if limit == 0 || limit > MAX_READ_LIMIT {
            return Err(StoreError::InvalidLimit {
                max: MAX_READ_LIMIT,
            });
        }
        let from_i64 = i64::try_from(from).map_err(|_| StoreError::UnknownPosition {
            requested: from,
            head: 0,
        })?;
        let sql = format!("{SELECT_EVENT} WHERE position >= $1 ORDER BY position LIMIT $2");
        let limit = limit as i64;
        let rows: Vec<EventRow> = match &self.inner.backend {
            Backend::Postgres { pool, .. } => {
                sqlx::query_as(&sql)
                    .bind(from_i64)
                    .bind(limit)
                    .fetch_all(pool)
                    .await?
            }
            Backend::Sqlite { reader, .. } => {
                sqlx::query_as(&sql)
                    .bind(from_i64)
                    .bind(limit)
                    .fetch_all(reader)
                    .await?
            }
        };
        if rows.is_empty() && from > 1 {
            let head = self.head().await?;
            if from > head + 1 {
                return Err(StoreError::UnknownPosition {
                    requested: from,
                    head,
                });
            }
        }
        rows.into_iter().map(decode_row).collect()
    }

    /// Reads from `from` to the head in batches, handing each to `batch`;
    /// returns the position after the last event read (where to subscribe).
    pub async fn read_to_head(
        &self,
        from: Position,
        mut batch: impl FnMut(&[RecordedEvent]),
    ) -> Result<Position, StoreError> {
        let mut next = from.max(1);
        loop {
            let events = self.read_all(next, 5_000).await?;
            let Some(last) = events.last().map(|e| e.position) else {
                return Ok(next);
            };
            batch(&events);
            next = last + 1;
        }
    }

    /// Position of the newest committed event; 0 for an empty log.
    pub async fn head(&self) -> Result<Position, StoreError> {
        const SQL: &str = "SELECT COALESCE(MAX(position), 0) FROM events";
        let head: i64 = match &self.inner.backend {
            Backend::Postgres { pool, .. } => sqlx::query_scalar(SQL).fetch_one(pool).await?,
            Backend::Sqlite { reader, .. } => sqlx::query_scalar(SQL).fetch_one(reader).await?,
        };
        Ok(to_u64(head))
    }

    /// A signal bumped whenever new events may be readable: by this process's
    /// appends and, on Postgres, by other processes' notifications.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    /// How often subscribers re-read without a notification.
    pub fn poll_interval(&self) -> Duration {
        self.inner.poll_interval
    }

    /// Begins a write transaction (SQLite: `BEGIN IMMEDIATE` on the writer).
    /// The BEGIN runs on a task of its own (see [`detached`]): a caller that
    /// stops waiting for it gets no transaction, and the one begun for it is
    /// rolled back when the task drops it, instead of going back to the pool
    /// open — which on SQLite, with its one writer connection, failed every
    /// later write of the process.
    pub async fn begin(&self) -> Result<StoreTx, StoreError> {
        let inner = self.inner.clone();
        detached(async move {
            Ok(match &inner.backend {
                Backend::Postgres { pool, .. } => StoreTx::Postgres(pool.begin().await?),
                Backend::Sqlite { writer, .. } => {
                    StoreTx::Sqlite(writer.begin_with("BEGIN IMMEDIATE").await?)
                }
            })
        })
        .await
    }

    /// Begins a read-only unit of work (SQLite: on a reader connection, so it
    /// does not wait for the writer).
    pub async fn begin_read(&self) -> Result<StoreTx, StoreError> {
        let inner = self.inner.clone();
        detached(async move {
            Ok(match &inner.backend {
                Backend::Postgres { pool, .. } => StoreTx::Postgres(pool.begin().await?),
                Backend::Sqlite { reader, .. } => StoreTx::Sqlite(reader.begin().await?),
            })
        })
        .await
    }

    /// Whether the store can take a write now: Postgres answers a statement;
    /// SQLite's writer connection begins and rolls back a write transaction
    /// within `wait`. Readiness asks this, so a writer that cannot write
    /// shows as not ready instead of as a 500 on every write.
    pub async fn check_writable(&self, wait: Duration) -> Result<(), StoreError> {
        let mut last = self.inner.write_probe.lock().await;
        if let Some((at, passed)) = *last
            && at.elapsed() < Duration::from_secs(1)
        {
            return if passed {
                Ok(())
            } else {
                Err(StoreError::Database(sqlx::Error::PoolTimedOut))
            };
        }
        let outcome = self.probe_write(wait).await;
        *last = Some((std::time::Instant::now(), outcome.is_ok()));
        outcome
    }

    async fn probe_write(&self, wait: Duration) -> Result<(), StoreError> {
        let inner = self.inner.clone();
        let probe = detached(async move {
            match &inner.backend {
                Backend::Postgres { pool, .. } => {
                    sqlx::query("SELECT 1").execute(pool).await?;
                }
                Backend::Sqlite { writer, .. } => {
                    writer
                        .begin_with("BEGIN IMMEDIATE")
                        .await?
                        .rollback()
                        .await?;
                }
            }
            Ok(())
        });
        match tokio::time::timeout(wait, probe).await {
            Ok(outcome) => outcome,
            Err(_) => Err(StoreError::Database(sqlx::Error::PoolTimedOut)),
        }
    }

    /// Closes the pools; later calls fail.
    pub async fn close(&self) {
        match &self.inner.backend {
            Backend::Postgres { pool, .. } => pool.close().await,
            Backend::Sqlite { writer, reader, .. } => {
                writer.close().await;
                reader.close().await;
            }
        }
    }
}

/// Runs `work` on a task of its own and waits for it. A caller that stops
/// waiting (a request deadline, a reset connection, an HTTP/2 `RST_STREAM`)
/// drops only this wait: the work runs on, so a transaction it opened is
/// committed or rolled back, never left open on a pooled connection.
async fn detached<T, F>(work: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
{
    tokio::spawn(work)
        .await
        .map_err(|_| StoreError::Database(sqlx::Error::WorkerCrashed))?
}

/// The pools' last line of defence: a connection still inside a transaction
/// is never handed out again (it is closed, which rolls back), whatever
/// left it so.
fn outside_transaction<C: sqlx::Connection>(conn: &mut C) -> bool {
    let clean = !conn.is_in_transaction();
    if !clean {
        tracing::warn!("a pooled connection was left inside a transaction; closing it");
    }
    clean
}

fn decode_row(row: EventRow) -> Result<RecordedEvent, StoreError> {
    let (position, stream_id, stream_version, event_type, payload, metadata, occurred_at) = row;
    let corrupt = |detail: String| StoreError::Corrupt { position, detail };
    let payload = serde_json::from_str(&payload).map_err(|e| corrupt(format!("payload: {e}")))?;
    let metadata: Metadata =
        serde_json::from_str(&metadata).map_err(|e| corrupt(format!("metadata: {e}")))?;
    let stream_id = StreamId::parse(stream_id).map_err(|e| corrupt(e.to_string()))?;
    Ok(RecordedEvent {
        position: to_u64(position),
        stream_id,
        stream_version: to_u64(stream_version),
        event_type,
        payload,
        metadata,
        occurred_at,
    })
}

/// Positions and versions are positive by the schema's checks.
fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}
