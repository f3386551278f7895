//! The Gatehouse domain core. No I/O: time, ids, random material and
//! already-hashed secrets come in as arguments, so every decision (a refresh
//! token reuse, a grace-period cut-off, a grant) is a pure, testable function.
//!
//! - [`ids`]: `AccountId`, `UserId`, `KeyId`, `SessionId` and their streams;
//! - [`email`], [`scope`], [`password`]: values parsed at the edge; `scope`
//!   also says what a wildcard grant reaches;
//! - [`secret`]: credential formats — API key secrets with their checksum,
//!   refresh tokens — and the hashes stored in their place;
//! - aggregates, each its events, `apply` and decisions: [`account`], [`user`]
//!   (and login attempts), [`session`] (refresh families), [`apikey`],
//!   [`signing`] (signing keys), [`catalogue`] (the scope catalogue and the
//!   one grant rule), [`usage`] (verifiers' usage summaries);
//! - [`activity`]: the kinds of entry in the key activity log;
//! - [`events`]: the macro mapping an aggregate's events to versioned names.

pub mod account;
pub mod activity;
pub mod apikey;
pub mod catalogue;
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
