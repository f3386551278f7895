//! End-to-end: the real `gatehouse` binary on a free port, called with real
//! gRPC clients. One test binary, so linking happens once.

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
