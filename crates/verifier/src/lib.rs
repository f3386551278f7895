//! The Gatehouse verifier: answers `Verify` and Envoy's `ext_authz` `Check`
//! from memory, on the hot path of every request its callers serve.
//!
//! - [`index`]: the in-memory index — API keys by secret hash, revoked
//!   sessions, signing keys — folded from the event log;
//! - [`snapshot`]: the index as bytes, stored every so many events and
//!   loaded at start-up so only later events are folded;
//! - [`verify`]: [`Verifier`] — the decision for one credential, with a bounded
//!   cache of already-verified tokens;
//! - [`follower`]: loads the index at start-up, tails the log, reports lag,
//!   and catches up once (coalesced, rate-limited) before refusing an unknown
//!   but well-formed key;
//! - [`usage`]: per-key usage counted in memory, flushed as one summary event
//!   per key per interval;
//! - [`decide`]: [`Decider`] — the decision every transport serves (one
//!   catch-up for an unknown key, outcomes counted);
//! - [`routes`]: the route policy (scopes by method and normalised path),
//!   re-exported from the domain, where the one rule lives.
//!
//! No transport lives here: gRPC, Envoy and HTTP adapters are in `gatehouse-transport`.

pub mod decide;
pub mod follower;
pub mod heads;
pub mod index;
pub mod snapshot;
pub mod usage;
pub mod verify;

pub use gatehouse_domain::routes;

pub use decide::Decider;
pub use follower::Follower;
pub use verify::{Denial, Kind, Verified, Verifier};
