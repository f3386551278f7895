//! End-to-end: the server on a free port, called with real gRPC and HTTP
//! clients — in the test's process on a clock the test moves (`support::server`)
//! or, where the process is the point, the real binary (`support::process`).
//! One test binary, so linking happens once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failure is a panic

mod audit;
mod cli;
mod client;
mod config;
mod console;
mod faults;
mod guard;
mod hardening;
mod hostile;
mod http;
mod interop;
mod issuer;
mod issuers;
mod keys;
mod password;
mod readme;
mod scopes;
mod serve;
mod snapshots;
mod support;
mod tls;
mod verifier;

pub use support::{BIN, authed};
