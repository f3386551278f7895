//! Scopes: `resource:action` permissions held on one account, and the
//! wildcard grants `resource:*` and `*`.
//!
//! A grant is stored as written; what it covers is decided at check time by
//! [`covers`] (which scopes a set of grants reaches, whatever exists) and by
//! the catalogue (which scopes exist and are live), so a scope defined after a
//! `*` was granted is held at once, and a retired one stops being held.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::DomainError;

/// Most scopes one client-supplied grant list may carry (resolved lists in
/// tokens are not capped by it).
pub const MAX_SCOPES: usize = 32;

/// Read API keys of the account.
pub const KEYS_READ: &str = "keys:read";
/// Create, rotate, revoke and delete API keys of the account.
pub const KEYS_WRITE: &str = "keys:write";
/// Create users in the account.
pub const USERS_WRITE: &str = "users:write";
/// Read the account's key activity log.
pub const ACTIVITY_READ: &str = "activity:read";
/// Manage the deployment: accounts and the scope catalogue. Grants nothing
/// inside other accounts, and no wildcard implies it.
pub const PLATFORM_ADMIN: &str = "platform:admin";
/// Full access: every account scope, built-in and catalogue (not `platform:admin`).
pub const ALL: &str = "*";

/// Gatehouse's own account scopes, always live, never in the catalogue.
pub const BUILT_IN: [&str; 4] = [KEYS_READ, KEYS_WRITE, USERS_WRITE, ACTIVITY_READ];

/// Built-in scopes and their descriptions, for listings.
pub const BUILT_IN_DESCRIPTIONS: [(&str, &str); 5] = [
    (KEYS_READ, "Read the account's API keys"),
    (
        KEYS_WRITE,
        "Create, rotate, revoke and delete the account's API keys",
    ),
    (USERS_WRITE, "Create users in the account"),
    (ACTIVITY_READ, "Read the account's key activity log"),
    (
        PLATFORM_ADMIN,
        "Manage accounts and the scope catalogue of the deployment",
    ),
];

/// Whether `name` is one of Gatehouse's own scopes (including `platform:admin`).
pub fn is_built_in(name: &str) -> bool {
    name == PLATFORM_ADMIN || BUILT_IN.contains(&name)
}

/// One scope or wildcard grant: `resource:action` (a lower-case resource of
/// 1–32 characters `[a-z0-9_-]` starting with a letter, an action of 1–32
/// characters `[a-z0-9_-]`), `resource:*`, or `*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Scope(String);

/// What a well-formed scope string is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Concrete,
    Wildcard,
}

fn shape(raw: &str) -> Option<Shape> {
    if raw == ALL {
        return Some(Shape::Wildcard);
    }
    let (resource, action) = raw.split_once(':')?;
    let part_ok = |part: &str| {
        (1..=32).contains(&part.len())
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    };
    let starts_with_letter = resource
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase());
    if !(starts_with_letter && part_ok(resource)) {
        None
    } else if action == "*" {
        Some(Shape::Wildcard)
    } else if part_ok(action) {
        Some(Shape::Concrete)
    } else {
        None
    }
}

impl Scope {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        match shape(raw) {
            Some(_) => Ok(Self(raw.to_string())),
            None => Err(DomainError::invalid(
                "scope",
                format!(
                    "{:?} must look like resource:action, resource:* or * (lower case)",
                    raw.chars().take(80).collect::<String>()
                ),
            )),
        }
    }

    /// Whether `raw` is a well-formed concrete scope, without allocating
    /// (the verifier checks every required scope of every call).
    pub fn is_concrete(raw: &str) -> bool {
        shape(raw) == Some(Shape::Concrete)
    }

    /// Parses a scope that must be concrete (a required scope, a catalogue entry).
    pub fn parse_concrete(raw: &str) -> Result<Self, DomainError> {
        let scope = Self::parse(raw)?;
        if scope.is_wildcard() {
            return Err(DomainError::invalid(
                "scope",
                format!(
                    "{raw:?}: a wildcard is a grant, not a scope; name a concrete resource:action"
                ),
            ));
        }
        Ok(scope)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `*` or `resource:*`.
    pub fn is_wildcard(&self) -> bool {
        self.0 == ALL || self.0.ends_with(":*")
    }

    /// The part before the colon (`*` for the full wildcard).
    pub fn resource(&self) -> &str {
        self.0.split_once(':').map_or(self.0.as_str(), |(r, _)| r)
    }
}

/// Lets maps keyed by [`Scope`] be searched with a `&str` (no allocation on
/// the verifier's hot path); order and equality are the string's.
impl std::borrow::Borrow<str> for Scope {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
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

/// Whether `grants` reach the concrete scope `scope` — by itself, by
/// `resource:*`, or by `*` — regardless of whether it exists. `platform:admin`
/// is reached only by itself.
pub fn covers(grants: &Scopes, scope: &str) -> bool {
    if grants.contains(scope) {
        return true;
    }
    if scope == PLATFORM_ADMIN {
        return false;
    }
    let resource = scope.split_once(':').map_or(scope, |(r, _)| r);
    grants.iter().any(|g| {
        g == ALL
            || g.strip_suffix(":*")
                .is_some_and(|wildcard_resource| wildcard_resource == resource)
    })
}

/// Whether a holder of `grants` may hand out the grant `grant`: a concrete
/// scope by covering it; `resource:*` only by holding it or `*`; `*` only by `*`.
/// (Holding every `claws:…` scope is not `claws:*`: a wildcard also reaches
/// scopes defined later.)
pub fn covers_grant(grants: &Scopes, grant: &Scope) -> bool {
    if grant.as_str() == ALL {
        grants.contains(ALL)
    } else if grant.is_wildcard() {
        grants.contains(ALL) || grants.contains(grant.as_str())
    } else {
        covers(grants, grant.as_str())
    }
}

/// A set of scopes or grants, sorted and without duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Scopes(BTreeSet<Scope>);

impl Scopes {
    /// Parses a client-supplied grant list: at most [`MAX_SCOPES`], each valid.
    pub fn parse<S: AsRef<str>>(raw: &[S]) -> Result<Self, DomainError> {
        if raw.len() > MAX_SCOPES {
            return Err(DomainError::invalid(
                "scopes",
                format!("at most {MAX_SCOPES} scopes"),
            ));
        }
        Self::parse_uncapped(raw)
    }

    fn parse_uncapped<S: AsRef<str>>(raw: &[S]) -> Result<Self, DomainError> {
        raw.iter()
            .map(|s| Scope::parse(s.as_ref()))
            .collect::<Result<BTreeSet<_>, _>>()
            .map(Self)
    }

    /// Parses the space-separated `scope` claim of a token (a resolved list,
    /// as long as the catalogue; the token's size bounds it).
    pub fn from_claim(claim: &str) -> Result<Self, DomainError> {
        let parts: Vec<&str> = claim.split(' ').filter(|s| !s.is_empty()).collect();
        Self::parse_uncapped(&parts)
    }

    /// The space-separated form used in the `scope` claim (RFC 8693 §4.2).
    pub fn to_claim(&self) -> String {
        self.iter().collect::<Vec<_>>().join(" ")
    }

    pub fn contains(&self, scope: &str) -> bool {
        self.0.iter().any(|s| s.0 == scope)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|s| s.0.as_str())
    }

    pub fn scopes(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter()
    }

    pub fn to_vec(&self) -> Vec<String> {
        self.iter().map(str::to_string).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scopes(raw: &[&str]) -> Scopes {
        Scopes::parse(raw).unwrap()
    }

    #[test]
    fn scopes_and_wildcards_parse() {
        for good in ["keys:read", "claws:*", "*", "a-b_1:x-y_2"] {
            assert!(Scope::parse(good).is_ok(), "{good:?}");
        }
        for bad in [
            "",
            "keys",
            ":read",
            "keys:",
            "Keys:read",
            "keys:re ad",
            "1keys:read",
            "keys:read:x",
            "keys:re*d",
            "keys:**",
            "*:read",
            "**",
        ] {
            let error = Scope::parse(bad).unwrap_err().to_string();
            assert!(
                error.contains(&format!("{bad:?}")),
                "names the input: {error}"
            );
        }
        assert!(Scope::parse_concrete("claws:*").is_err());
        assert!(Scope::parse_concrete("*").is_err());
        assert_eq!(Scope::parse("claws:read").unwrap().resource(), "claws");
        let held = scopes(&["keys:write", "keys:read", "keys:read"]);
        assert_eq!(held.to_claim(), "keys:read keys:write");
        assert_eq!(Scopes::from_claim(&held.to_claim()).unwrap(), held);
        let too_many: Vec<String> = (0..=MAX_SCOPES).map(|i| format!("r{i}:read")).collect();
        assert!(Scopes::parse(&too_many).is_err());
        assert_eq!(
            Scopes::from_claim(&too_many.join(" ")).unwrap().len(),
            MAX_SCOPES + 1,
            "resolved claims are not capped"
        );
    }

    #[test]
    fn wildcards_cover_their_resource_and_never_platform_admin() {
        let claws = scopes(&["claws:*"]);
        assert!(covers(&claws, "claws:read"));
        assert!(!covers(&claws, "team:read"));
        let all = scopes(&["*"]);
        assert!(covers(&all, "team:write"));
        assert!(covers(&all, KEYS_WRITE));
        assert!(!covers(&all, PLATFORM_ADMIN));
        assert!(!covers(&scopes(&["platform:*"]), PLATFORM_ADMIN));
        assert!(covers(&scopes(&[PLATFORM_ADMIN]), PLATFORM_ADMIN));
    }

    #[test]
    fn granting_a_wildcard_needs_that_wildcard_or_all() {
        let both = scopes(&["claws:read", "claws:write"]);
        let wildcard = Scope::parse("claws:*").unwrap();
        assert!(!covers_grant(&both, &wildcard));
        assert!(covers_grant(&scopes(&["claws:*"]), &wildcard));
        assert!(covers_grant(&scopes(&["*"]), &wildcard));
        let all = Scope::parse("*").unwrap();
        assert!(!covers_grant(&scopes(&["claws:*", "team:*"]), &all));
        assert!(covers_grant(&scopes(&["*"]), &all));
    }
}
