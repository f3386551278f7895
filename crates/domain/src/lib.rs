//! The Gatehouse domain core. No I/O: time, ids, random material and
//! already-hashed secrets come in as arguments, so every decision (a refresh
//! token reuse, a grace-period cut-off) is a pure, testable function.
//!
//! - [`ids`]: `AccountId`, `UserId`, `KeyId`, `SessionId` and their streams;
//! - [`email`], [`scope`], [`password`]: values parsed at the edge;
//! - [`secret`]: credential formats — API key secrets with their checksum,
//!   refresh tokens — and the hashes stored in their place;
//! - [`account`], [`user`], [`session`]: aggregates — events, `apply`, decisions.

pub mod account;
pub mod apikey;
pub mod email;
pub mod events;
pub mod ids;
pub mod password;
pub mod scope;
pub mod secret;
pub mod session;
pub mod signing;
pub mod usage;
pub mod user;

/// Everything a value or decision of the domain can refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("invalid {what}: {why}")]
    Invalid { what: &'static str, why: String },
}

impl DomainError {
    pub(crate) fn invalid(what: &'static str, why: impl Into<String>) -> Self {
        Self::Invalid {
            what,
            why: why.into(),
        }
    }
}
