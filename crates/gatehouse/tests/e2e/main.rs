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
mod tls;
mod verifier;

/// Path of the binary under test, built by cargo for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");

/// `message` with `authorization: Bearer <bearer>` metadata.
pub fn authed<T>(message: T, bearer: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {bearer}").parse().unwrap());
    request
}
