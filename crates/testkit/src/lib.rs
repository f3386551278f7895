//! Test harness shared by every crate's integration tests.
//!
//! - [`postgres`]: a Postgres for the tests — `DATABASE_URL` if set, otherwise a
//!   throwaway cluster started from the local PostgreSQL binaries — and
//!   [`fresh_database`], one new database per test. When neither works the tests
//!   fail with a message that says what to install; they never skip.
//! - [`process`]: the real `gatehouse` binary on a free port, with its logs kept
//!   for assertions, and gRPC channels to it.

pub mod postgres;
pub mod process;

pub use postgres::{PgCluster, admin_url, fresh_database, start_throwaway_cluster};
pub use process::{Gatehouse, channel};
