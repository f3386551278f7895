//! The event store's typed errors.

use crate::types::ExpectedVersion;

/// Everything an event store call can fail with. Input errors are decided
/// before any database work, so they never leave a partial write.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid stream id ({len} bytes): must be 1-200 characters of [A-Za-z0-9_.:-]")]
    InvalidStreamId { len: usize },
    #[error("an append needs at least one event")]
    EmptyAppend,
    #[error("an append may carry at most {limit} events, got {count}")]
    TooManyEvents { count: usize, limit: usize },
    #[error("invalid event type: must be 1-100 characters of [A-Za-z0-9._]")]
    InvalidEventType,
    #[error("event payload of {size} bytes exceeds the limit of {limit} bytes")]
    PayloadTooLarge { size: usize, limit: usize },
    #[error("stream {stream}: expected version {expected}, but it is at {actual}")]
    WrongExpectedVersion {
        stream: String,
        expected: ExpectedVersion,
        actual: u64,
    },
    #[error("position {requested} is past the head of the log ({head})")]
    UnknownPosition { requested: u64, head: u64 },
    #[error("a read limit must be between 1 and {max}")]
    InvalidLimit { max: usize },
    #[error("unsupported database URL: expected postgres://, postgresql:// or sqlite:")]
    UnsupportedUrl,
    #[error("stored event at position {position} is unreadable: {detail}")]
    Corrupt { position: i64, detail: String },
    #[error("snapshot {name} is unreadable: {detail}")]
    CorruptSnapshot { name: String, detail: String },
    #[error("snapshot {name} is too large to store")]
    SnapshotTooLarge { name: String },
    #[error("could not serialize event: {0}")]
    Serialize(#[source] serde_json::Error),
    #[error("data directory: {0}")]
    DataDir(#[source] std::io::Error),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// True for errors a retry with fresh state may fix (a lost race).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::WrongExpectedVersion { .. })
    }

    /// True when the append is refused for what it holds — invalid or too
    /// large, or data the database will not take (SQLSTATE classes 22, data
    /// exception, and 23, integrity constraint) — not for the database being
    /// unable to write: retried unchanged, it fails the same way.
    pub fn is_refused_content(&self) -> bool {
        match self {
            Self::InvalidStreamId { .. }
            | Self::EmptyAppend
            | Self::TooManyEvents { .. }
            | Self::InvalidEventType
            | Self::PayloadTooLarge { .. }
            | Self::Serialize(_) => true,
            Self::Database(sqlx::Error::Database(db)) => db
                .code()
                .is_some_and(|c| c.starts_with("22") || c.starts_with("23")),
            _ => false,
        }
    }

    /// True when the database could not be reached, before any statement of
    /// the call ran: no connection from the pool in time, a closed pool, a
    /// server refusing connections (SQLSTATE 08001/08004, 53300, 57P03, and
    /// 55000, 3D000, 28000, 28P01 when connecting), or
    /// SQLite's write lock held. Nothing was written, so the caller may retry
    /// (UNAVAILABLE). An error *during* a statement or a commit (a dropped
    /// connection) is not one of these: the write may have landed, and a
    /// blind retry of, say, a refresh would look like token reuse.
    pub fn is_unavailable(&self) -> bool {
        let Self::Database(error) = self else {
            return false;
        };
        match error {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
            sqlx::Error::Database(db) => db.code().is_some_and(|code| {
                matches!(
                    code.as_ref(),
                    // Cannot connect, refused, too many connections,
                    // starting up; the database not accepting connections
                    // (ALLOW_CONNECTIONS false), missing, or the login
                    // refused — outages of the deployment, never of the
                    // request; SQLite busy and locked.
                    "08001"
                        | "08004"
                        | "53300"
                        | "57P03"
                        | "55000"
                        | "3D000"
                        | "28000"
                        | "28P01"
                        | "5"
                        | "261"
                        | "517"
                        | "773"
                )
            }),
            _ => false,
        }
    }
}
