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
    #[error("could not serialize event: {0}")]
    Serialize(#[source] serde_json::Error),
    #[error("could not create the data directory: {0}")]
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

    /// True when the database cannot be reached or is out of connections:
    /// the caller should retry later (UNAVAILABLE), nothing is broken here.
    pub fn is_unavailable(&self) -> bool {
        let Self::Database(error) = self else {
            return false;
        };
        match error {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => true,
            // SQLSTATE 08 (connection exception), 53 (insufficient
            // resources), 57P01-03 (shutdown, cannot connect now); SQLite busy.
            sqlx::Error::Database(db) => db.code().is_some_and(|code| {
                code.starts_with("08")
                    || code.starts_with("53")
                    || matches!(
                        code.as_ref(),
                        "57P01" | "57P02" | "57P03" | "5" | "6" | "261" | "262" | "517" | "773"
                    )
            }),
            _ => false,
        }
    }
}
