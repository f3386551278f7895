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
//! - [`token`]: who a verified access token speaks for (one rule for the
//!   issuer and the verifier);
//! - [`routes`]: the one route policy (which scopes a request needs), for
//!   ext_authz, forward auth and the client crate's guard;
//! - [`clock`]: the one source of "now" the application layers share (a
//!   manual one for tests);
//! - [`events`]: the macro mapping an aggregate's events to versioned names.

pub mod account;
pub mod activity;
pub mod apikey;
pub mod catalogue;
pub mod clock;
pub mod email;
pub mod events;
pub mod ids;
pub mod keysecrets;
pub mod password;
pub mod routes;
pub mod scope;
pub mod secret;
pub mod session;
pub mod signing;
pub mod token;
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

/// Checks that a time given by a caller lies in years 1 to 9999: what RFC 3339
/// can write and every backend can store (Postgres refuses earlier years with
/// an error that is no fault of ours).
pub fn check_time(
    what: &'static str,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<chrono::DateTime<chrono::Utc>, DomainError> {
    use chrono::Datelike as _;
    if (1..=9999).contains(&at.year()) {
        Ok(at)
    } else {
        Err(DomainError::invalid(what, "must be in years 1 to 9999"))
    }
}

#[cfg(test)]
mod time_tests {
    #[test]
    fn times_outside_four_digit_years_are_refused() {
        let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        assert!(super::check_time("since", at("2026-01-01T00:00:00Z")).is_ok());
        assert!(super::check_time("since", at("9999-12-31T23:59:59Z")).is_ok());
        let ancient = chrono::DateTime::from_timestamp(-300_000_000_000, 0).unwrap();
        let err = super::check_time("since", ancient).unwrap_err();
        assert!(err.to_string().contains("since"), "{err}");
    }
}
