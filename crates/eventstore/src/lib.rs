//! The Gatehouse event log: an append-only table of events on Postgres
//! (production) or SQLite (embedded default), behind one contract.
//!
//! - [`types`]: stream ids, expected versions, new and recorded events, limits;
//! - [`store`]: [`EventStore`] — appends with optimistic concurrency, reads by
//!   stream and by global position, a change signal (`LISTEN/NOTIFY` on Postgres);
//! - [`subscription`]: catch-up-then-live subscriptions that never skip an event;
//! - [`projection`]: read models whose checkpoint commits with them, and rebuild;
//! - `group`: group commit of concurrent Postgres appends;
//! - [`snapshot`]: the latest serialized state of an in-memory read model;
//! - [`progress`]: periodic log lines, or a bar on a terminal when a command
//!   opts in, for long reads of the log;
//! - [`error`]: [`StoreError`], the typed failures.

pub mod error;
mod group;
pub mod progress;
pub mod projection;
pub mod snapshot;
pub mod store;
pub mod subscription;
pub mod types;

pub use error::StoreError;
pub use progress::Progress;
pub use projection::{Outcome, Projection, ProjectionRunner};
pub use snapshot::Snapshot;
pub use store::{AppendResult, EventStore, MAX_READ_LIMIT, StoreOptions, StoreTx};
pub use subscription::Subscription;
pub use types::{
    ExpectedVersion, MAX_EVENTS_PER_APPEND, MAX_PAYLOAD_BYTES, Metadata, NewEvent, Position,
    RecordedEvent, StreamId,
};
