//! [`EventStore`]: one contract over two backends.
//!
//! Appends are serialised (Postgres: a transaction-scoped advisory lock;
//! SQLite: one writer connection with `BEGIN IMMEDIATE`), so positions become
//! visible in increasing order and a reader never passes over an event that a
//! slower transaction commits later — the sequence-gap problem. On Postgres,
//! concurrent appends of one process share a transaction (`crate::group`),
//! so the lock costs one WAL flush per group rather than per append.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};
use tokio::sync::watch;

use crate::group::Committer;
use crate::types::{ValidatedEvent, validate};
use crate::{ExpectedVersion, Metadata, NewEvent, Position, RecordedEvent, StoreError, StreamId};

/// Notification channel an append signals on commit (Postgres `NOTIFY`).
pub(crate) const NOTIFY_CHANNEL: &str = "gatehouse_events";
/// Advisory lock key that serialises appends ("gatehous" in ASCII).
const APPEND_LOCK_KEY: i64 = 0x6761_7465_686f_7573;
/// Largest page a single read returns.
pub const MAX_READ_LIMIT: usize = 10_000;

static PG_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");
static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

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

    /// Connects to Postgres and starts listening for appends of other processes.
    pub async fn connect_postgres(url: &str, options: StoreOptions) -> Result<Self, StoreError> {
        let connect = PgConnectOptions::from_str(url)?.application_name("gatehouse");
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .before_acquire(|conn, _| Box::pin(async move { Ok(outside_transaction(conn)) }))
            .connect_with(connect)
            .await?;
        let (changes, _) = watch::channel(0);
        let listener = tokio::spawn(listen_for_appends(pool.clone(), changes.clone()));
        let committer = Committer::start(pool.clone(), changes.clone());
        Ok(Self {
            inner: Arc::new(Inner {
                backend: Backend::Postgres { pool, committer },
                changes,
                poll_interval: options.poll_interval,
                _listener: Some(AbortOnDrop(listener)),
                local_readers: Default::default(),
                write_probe: Default::default(),
            }),
        })
    }

    /// Opens (creating if missing) an SQLite database file in WAL mode.
    /// The file (and a directory created for it) is private to its owner
    /// (0600, 0700): it holds every hash and sealed key.
    pub async fn open_sqlite(path: &Path, options: StoreOptions) -> Result<Self, StoreError> {
        private_file(path).map_err(StoreError::DataDir)?;
        let connect = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .before_acquire(|conn, _| Box::pin(async move { Ok(outside_transaction(conn)) }))
            .connect_with(connect.clone())
            .await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .before_acquire(|conn, _| Box::pin(async move { Ok(outside_transaction(conn)) }))
            .connect_with(connect)
            .await?;
        let (changes, _) = watch::channel(0);
        Ok(Self {
            inner: Arc::new(Inner {
                backend: Backend::Sqlite {
                    writer,
                    reader,
                    path: is_plain_file(path).then(|| path.to_path_buf()),
                },
                changes,
                poll_interval: options.poll_interval,
                _listener: None,
                local_readers: Default::default(),
                write_probe: Default::default(),
            }),
        })
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
            Backend::Postgres { pool, .. } => PG_MIGRATOR.run(pool).await?,
            Backend::Sqlite { writer, path, .. } => {
                let _lock = match path {
                    Some(path) => Some(lock_file(path).await.map_err(StoreError::DataDir)?),
                    None => None,
                };
                SQLITE_MIGRATOR.run(writer).await?;
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
            let mut results = Vec::with_capacity(batches.len());
            let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
            for (stream, expected, events) in &batches {
                results.push(insert_events(&mut tx, stream, *expected, events).await?);
            }
            tx.commit()
                .await
                .map_err(|e| commit_conflict(e, &batches))?;
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
                    insert_rows(&mut tx, &rows).await?;
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

/// Signals listeners (on commit) that the log grew to `last`.
pub(crate) async fn notify_appended(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    last: u64,
) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(NOTIFY_CHANNEL)
        .bind(last.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Takes the log's append lock for the transaction: appends commit one at a
/// time, so positions become visible in order and no reader skips one.
pub(crate) async fn lock_appends(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(APPEND_LOCK_KEY)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Rows per INSERT statement (6 parameters each, well under 65,535).
const ROWS_PER_STATEMENT: usize = 400;
/// JSON bytes per INSERT statement, about.
const BYTES_PER_STATEMENT: usize = 8 * 1024 * 1024;

/// One row of [`insert_rows`]: an event at its stream and version.
pub(crate) type Row<'a> = (&'a StreamId, i64, &'a ValidatedEvent);

/// Inserts `rows`, many per statement (see [`statements`]); returns each
/// row's stream, version and position. Shared SQL for both backends.
pub(crate) async fn insert_rows<DB>(
    tx: &mut sqlx::Transaction<'static, DB>,
    rows: &[Row<'_>],
) -> Result<Vec<(String, i64, i64)>, StoreError>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    i64: sqlx::Type<DB> + for<'q> sqlx::Encode<'q, DB>,
    for<'q> &'q str: sqlx::Type<DB> + sqlx::Encode<'q, DB>,
    DateTime<Utc>: sqlx::Type<DB> + for<'q> sqlx::Encode<'q, DB>,
    (String, i64, i64): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    let json = if DB::NAME == "PostgreSQL" {
        |n: usize| format!("CAST(${n} AS JSONB)")
    } else {
        |n: usize| format!("${n}")
    };
    let mut written = Vec::with_capacity(rows.len());
    for chunk in statements(rows) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| {
                let p = i * 6;
                format!(
                    "(${}, ${}, ${}, {}, {}, ${})",
                    p + 1,
                    p + 2,
                    p + 3,
                    json(p + 4),
                    json(p + 5),
                    p + 6
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO events (stream_id, stream_version, event_type, payload, metadata, occurred_at) \
             VALUES {} RETURNING stream_id, stream_version, position",
            values.join(", ")
        );
        let mut query = sqlx::query_as(&sql);
        for (stream, version, event) in chunk {
            query = query
                .bind(stream.as_str())
                .bind(*version)
                .bind(event.event_type.as_str())
                .bind(event.payload.as_str())
                .bind(event.metadata.as_str())
                .bind(event.occurred_at);
        }
        written.extend(query.fetch_all(&mut **tx).await?);
    }
    Ok(written)
}

/// Splits `rows` into INSERT statements of at most [`ROWS_PER_STATEMENT`]
/// rows and about [`BYTES_PER_STATEMENT`] of JSON (one row may exceed it),
/// so many or large events do not become one huge message.
fn statements<'r, 'a>(rows: &'r [Row<'a>]) -> impl Iterator<Item = &'r [Row<'a>]> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut bytes = 0;
        let mut end = 0;
        while end < rest.len().min(ROWS_PER_STATEMENT) {
            let (_, _, event) = rest[end];
            bytes += event.payload.len() + event.metadata.len();
            if end > 0 && bytes > BYTES_PER_STATEMENT {
                break;
            }
            end += 1;
        }
        let (chunk, tail) = rest.split_at(end);
        rest = tail;
        Some(chunk)
    })
}

/// Checks the stream's version and inserts the events, inside the caller's
/// (already serialised) transaction. Shared SQL for both backends.
async fn insert_events<DB>(
    tx: &mut sqlx::Transaction<'static, DB>,
    stream: &StreamId,
    expected: ExpectedVersion,
    events: &[ValidatedEvent],
) -> Result<AppendResult, StoreError>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    i64: sqlx::Type<DB> + for<'r> sqlx::Decode<'r, DB> + for<'q> sqlx::Encode<'q, DB>,
    for<'q> &'q str: sqlx::Type<DB> + sqlx::Encode<'q, DB>,
    DateTime<Utc>: sqlx::Type<DB> + for<'q> sqlx::Encode<'q, DB>,
    (i64,): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    const VERSION_SQL: &str =
        "SELECT COALESCE(MAX(stream_version), 0) FROM events WHERE stream_id = $1";
    let (actual,): (i64,) = sqlx::query_as(VERSION_SQL)
        .bind(stream.as_str())
        .fetch_one(&mut **tx)
        .await?;
    let actual = to_u64(actual);
    expected.check(stream, actual)?;

    // Postgres casts the text to JSONB; SQLite stores it as checked JSON text.
    let insert_sql = if DB::NAME == "PostgreSQL" {
        "INSERT INTO events (stream_id, stream_version, event_type, payload, metadata, occurred_at) \
         VALUES ($1, $2, $3, CAST($4 AS JSONB), CAST($5 AS JSONB), $6) RETURNING position"
    } else {
        "INSERT INTO events (stream_id, stream_version, event_type, payload, metadata, occurred_at) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING position"
    };
    let mut version = actual;
    let mut first_position = 0;
    let mut last_position = 0;
    for event in events {
        version += 1;
        let (position,): (i64,) = sqlx::query_as(insert_sql)
            .bind(stream.as_str())
            .bind(version as i64)
            .bind(event.event_type.as_str())
            .bind(event.payload.as_str())
            .bind(event.metadata.as_str())
            .bind(event.occurred_at)
            .fetch_one(&mut **tx)
            .await
            .map_err(|e| conflict_or(e, stream, expected))?;
        let position = to_u64(position);
        if first_position == 0 {
            first_position = position;
        }
        last_position = position;
    }
    Ok(AppendResult {
        first_position,
        last_position,
        stream_version: version,
    })
}

/// A commit-time unique violation, reported against the first stream.
fn commit_conflict(
    error: sqlx::Error,
    batches: &[(StreamId, ExpectedVersion, Vec<ValidatedEvent>)],
) -> StoreError {
    match batches.first() {
        Some((stream, expected, _)) => conflict_or(error, stream, *expected),
        None => StoreError::Database(error),
    }
}

/// A unique violation on `(stream_id, stream_version)` means another writer
/// won the race: report it as the typed conflict, not a database error.
pub(crate) fn conflict_or(
    error: sqlx::Error,
    stream: &StreamId,
    expected: ExpectedVersion,
) -> StoreError {
    let unique_violation = error
        .as_database_error()
        .is_some_and(|db| db.is_unique_violation());
    if unique_violation {
        StoreError::WrongExpectedVersion {
            stream: stream.to_string(),
            expected,
            // The winner's version is not known here; it is at least one past ours.
            actual: match expected {
                ExpectedVersion::Exact(v) => v + 1,
                _ => 1,
            },
        }
    } else {
        StoreError::Database(error)
    }
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

/// Turns Postgres notifications (from any process) into change signals. A lost
/// connection is re-established by the listener; the signal is bumped then too,
/// so subscribers read whatever they may have missed.
async fn listen_for_appends(pool: PgPool, changes: watch::Sender<u64>) {
    loop {
        let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for event log notifications; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(error) = listener.listen(NOTIFY_CHANNEL).await {
            tracing::warn!(%error, "LISTEN failed; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        changes.send_modify(|n| *n = n.wrapping_add(1));
        loop {
            match listener.try_recv().await {
                Ok(Some(_)) => changes.send_modify(|n| *n = n.wrapping_add(1)),
                Ok(None) => {
                    // Connection lost and re-established: notifications in
                    // between are gone, so wake readers to catch up.
                    changes.send_modify(|n| *n = n.wrapping_add(1));
                }
                Err(error) => {
                    tracing::warn!(%error, "event log notifications interrupted; reconnecting");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    break;
                }
            }
        }
    }
}

/// Whether `path` names a file (not an in-memory database or a URI with
/// parameters).
fn is_plain_file(path: &Path) -> bool {
    let name = path.to_string_lossy();
    !(name.starts_with(":memory:") || name.contains('?') || name.starts_with("file:"))
}

/// Takes an exclusive lock on `<path>.migrate.lock` (created 0600), waiting
/// for another process that holds it; released when the file is dropped.
async fn lock_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut name = path.as_os_str().to_owned();
    name.push(".migrate.lock");
    let lock = std::path::PathBuf::from(name);
    tokio::task::spawn_blocking(move || {
        let mut options = std::fs::OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&lock)?;
        file.lock()?;
        Ok(file)
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Creates `path` (and its missing directories) readable by its owner only:
/// directories 0700, the file 0600. An existing database file, or its WAL
/// and shared-memory files, that others may read is tightened to 0600 —
/// SQLite gives the files it creates the database file's mode. An existing
/// directory is kept as it is (it may be the working directory), except
/// that others' write access to it is taken away (or, where this user
/// cannot, a world-writable one is refused): they could swap its files.
fn private_file(path: &Path) -> std::io::Result<()> {
    if !is_plain_file(path) {
        return Ok(());
    }
    if let Some(dir) = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir)?;
    }
    #[cfg(unix)]
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir)?.permissions().mode();
        if mode & 0o022 != 0 {
            // Others could replace the database or the master key in it:
            // take their write access away, as the files' read access is.
            let tightened = std::fs::Permissions::from_mode(mode & !0o022 & 0o7777);
            match std::fs::set_permissions(dir, tightened) {
                Ok(()) => tracing::warn!(
                    path = %dir.display(),
                    mode = format!("{:o}", mode & 0o7777),
                    "others could write to the data directory; took their write access away"
                ),
                // Not ours to change, and only a group may write (a volume
                // shared through its group, as Kubernetes' fsGroup does).
                Err(_) if mode & 0o002 == 0 => tracing::warn!(
                    path = %dir.display(),
                    "the data directory's group may write to it: its members could replace the database or the master key"
                ),
                Err(_) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::PermissionDenied,
                        format!(
                            "{} is writable by other users (mode {:o}), who could replace the database or the master key in it, and cannot be made private by this user; use a directory of this user's (a subdirectory is created 0700)",
                            dir.display(),
                            mode & 0o7777
                        ),
                    ));
                }
            }
        }
    }
    if !path.exists() {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for suffix in ["", "-wal", "-shm"] {
            let mut file = path.as_os_str().to_owned();
            file.push(suffix);
            let file = std::path::PathBuf::from(file);
            // A symlink is the operator's arrangement: its target is left alone.
            let Ok(meta) = std::fs::symlink_metadata(&file) else {
                continue;
            };
            if !meta.file_type().is_file() {
                continue;
            }
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(path = %file.display(), mode = format!("{:o}", mode & 0o777), "others could read the database file; tightening it to 0600");
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))?;
            }
        }
    }
    Ok(())
}
