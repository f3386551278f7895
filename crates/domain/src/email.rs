//! Usernames are email addresses, compared case-insensitively.

use serde::{Deserialize, Serialize};

use crate::DomainError;

/// A normalised (trimmed, lower-case) email address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    /// Parses an address: 3–254 characters, one `@`, a non-empty local part of
    /// at most 64 characters, a dotted domain, no spaces or control characters.
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let email = raw.trim().to_lowercase();
        let invalid = |why: &str| Err(DomainError::invalid("username", why));
        if email.len() < 3 || email.len() > 254 {
            return invalid("an email address of 3 to 254 characters is required");
        }
        if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return invalid("must not contain spaces or control characters");
        }
        let Some((local, domain)) = email.split_once('@') else {
            return invalid("must be an email address");
        };
        if local.is_empty() || local.len() > 64 || domain.contains('@') {
            return invalid("must be an email address");
        }
        if !domain.contains('.') || domain.starts_with('.') || domain.ends_with('.') {
            return invalid("the domain must be a dotted name");
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            Email::parse("  Ada@Example.COM ").unwrap().as_str(),
            "ada@example.com"
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a b@example.com",
            "a@b@c.com",
            "ada@.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(65))).is_err());
    }
}
