//! Scopes: `resource:action` permissions held on one account.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::DomainError;

/// Most scopes one credential may carry.
pub const MAX_SCOPES: usize = 32;

/// Read API keys of the account.
pub const KEYS_READ: &str = "keys:read";
/// Create, rotate and revoke API keys of the account.
pub const KEYS_WRITE: &str = "keys:write";
/// Create users in the account.
pub const USERS_WRITE: &str = "users:write";
/// Read the account's key activity log.
pub const ACTIVITY_READ: &str = "activity:read";
/// Create accounts. Grants nothing inside other accounts.
pub const PLATFORM_ADMIN: &str = "platform:admin";

/// Scopes an account owner holds on their own account.
pub const OWNER_SCOPES: [&str; 4] = [KEYS_READ, KEYS_WRITE, USERS_WRITE, ACTIVITY_READ];

/// One `resource:action` scope: a lower-case resource of 1–32 characters
/// `[a-z0-9_-]` starting with a letter, a colon, and an action of 1–32
/// characters `[a-z0-9_*-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Scope(String);

impl Scope {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let invalid =
            || DomainError::invalid("scope", "must look like resource:action (lower case)");
        let (resource, action) = raw.split_once(':').ok_or_else(invalid)?;
        let part_ok = |part: &str, extra: &[u8]| {
            (1..=32).contains(&part.len())
                && part.bytes().all(|b| {
                    b.is_ascii_lowercase()
                        || b.is_ascii_digit()
                        || b == b'_'
                        || b == b'-'
                        || extra.contains(&b)
                })
        };
        let starts_with_letter = resource
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase());
        if starts_with_letter && part_ok(resource, &[]) && part_ok(action, b"*") {
            Ok(Self(raw.to_string()))
        } else {
            Err(invalid())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Scope {
    type Error = DomainError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Scope> for String {
    fn from(scope: Scope) -> Self {
        scope.0
    }
}

/// A set of scopes, sorted and without duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Scopes(BTreeSet<Scope>);

impl Scopes {
    /// Parses a client-supplied list: at most [`MAX_SCOPES`], each valid.
    pub fn parse<S: AsRef<str>>(raw: &[S]) -> Result<Self, DomainError> {
        if raw.len() > MAX_SCOPES {
            return Err(DomainError::invalid(
                "scopes",
                format!("at most {MAX_SCOPES} scopes"),
            ));
        }
        raw.iter()
            .map(|s| Scope::parse(s.as_ref()))
            .collect::<Result<BTreeSet<_>, _>>()
            .map(Self)
    }

    /// Parses the space-separated `scope` claim of a token.
    pub fn from_claim(claim: &str) -> Result<Self, DomainError> {
        let parts: Vec<&str> = claim.split(' ').filter(|s| !s.is_empty()).collect();
        Self::parse(&parts)
    }

    /// The space-separated form used in the `scope` claim (RFC 8693 §4.2).
    pub fn to_claim(&self) -> String {
        self.iter().collect::<Vec<_>>().join(" ")
    }

    pub fn contains(&self, scope: &str) -> bool {
        self.0.iter().any(|s| s.0 == scope)
    }

    /// Whether every scope of `other` is held here.
    pub fn is_superset(&self, other: &Scopes) -> bool {
        self.0.is_superset(&other.0)
    }

    /// The required scopes not held here.
    pub fn missing<'a>(&self, required: &'a [String]) -> Vec<&'a str> {
        required
            .iter()
            .map(String::as_str)
            .filter(|r| !self.contains(r))
            .collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|s| s.0.as_str())
    }

    pub fn to_vec(&self) -> Vec<String> {
        self.iter().map(str::to_string).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_and_compare() {
        assert!(Scope::parse("keys:read").is_ok());
        assert!(Scope::parse("orders:*").is_ok());
        for bad in [
            "",
            "keys",
            ":read",
            "keys:",
            "Keys:read",
            "keys:re ad",
            "1keys:read",
            "keys:read:x",
        ] {
            assert!(Scope::parse(bad).is_err(), "{bad:?}");
        }
        let held = Scopes::parse(&["keys:write", "keys:read", "keys:read"]).unwrap();
        assert_eq!(held.to_claim(), "keys:read keys:write");
        assert_eq!(Scopes::from_claim(&held.to_claim()).unwrap(), held);
        let wanted = Scopes::parse(&["keys:read"]).unwrap();
        assert!(held.is_superset(&wanted));
        assert!(!wanted.is_superset(&held));
        assert_eq!(
            held.missing(&["keys:read".into(), "users:write".into()]),
            ["users:write"]
        );
        let too_many: Vec<String> = (0..=MAX_SCOPES).map(|i| format!("r{i}:read")).collect();
        assert!(Scopes::parse(&too_many).is_err());
    }
}
