//! Test harness shared by every crate's integration tests.
//!
//! - [`postgres`]: a Postgres for the tests — `DATABASE_URL` if set, otherwise a
//!   throwaway cluster started from the local PostgreSQL binaries — and
//!   [`fresh_database`], one new database per test. When neither works the tests
//!   fail with a message that says what to install; they never skip.
//! - [`app`]: [`spawn_app`] — the server in this process, on a free port and
//!   a manual clock, its logs kept: what most end-to-end tests start;
//! - [`process`]: the real `gatehouse` binary on a free port, with its logs kept
//!   for assertions, and gRPC channels to it.
//! - [`browser`]: a headless Chromium driven over WebDriver, found or
//!   installed (Debian's `chromium` and `chromium-driver`), or a failure that
//!   says what to install.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // the harness reports a broken test environment by panicking, as a test does

pub mod app;
pub mod browser;
pub mod postgres;
pub mod process;

pub use app::{App, spawn_app, spawn_app_on};
pub use browser::Browser;
pub use postgres::{PgCluster, admin_url, fresh_database, start_throwaway_cluster};
pub use process::{Gatehouse, channel};
