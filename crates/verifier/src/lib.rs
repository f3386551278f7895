//! The Gatehouse verifier: answers `Verify` and Envoy's `ext_authz` `Check`
//! from memory, on the hot path of every request its callers serve.
//!
//! - [`index`]: the in-memory index — API keys by secret hash, revoked
//!   sessions, signing keys — folded from the event log;
//! - [`verify`]: [`Verifier`] — the decision for one credential, with a bounded
//!   cache of already-verified tokens;
//! - [`follower`]: loads the index at start-up, tails the log, reports lag,
//!   and catches up once (coalesced, rate-limited) before refusing an unknown
//!   but well-formed key;
//! - [`usage`]: per-key usage counted in memory, flushed as one summary event
//!   per key per interval;
//! - [`grpc`]: `VerifierService` and `envoy.service.auth.v3.Authorization`.

pub mod follower;
pub mod grpc;
pub mod index;
pub mod usage;
pub mod verify;

pub use follower::Follower;
pub use verify::{Denial, Kind, Verified, Verifier};
