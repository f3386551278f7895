//! Identifiers: UUIDs (v7 when minted by Gatehouse), each with its stream.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::DomainError;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $what:literal, $stream:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// Wraps an id minted by the caller (`Uuid::now_v7()` in the services).
            pub fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }

            /// Parses a client-supplied id; the nil UUID is refused.
            pub fn parse(raw: &str) -> Result<Self, DomainError> {
                let raw = raw.trim();
                if raw.len() > 40 {
                    return Err(DomainError::invalid($what, "too long"));
                }
                match Uuid::parse_str(raw) {
                    Ok(id) if !id.is_nil() => Ok(Self(id)),
                    _ => Err(DomainError::invalid($what, "not a UUID")),
                }
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }

            /// The event stream of this entity, e.g. `account-<uuid>`.
            pub fn stream(&self) -> String {
                format!(concat!($stream, "-{}"), self.0)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// An account (tenant).
    AccountId, "account id", "account"
);
id_type!(
    /// A user of an account.
    UserId, "user id", "user"
);
id_type!(
    /// The public id of an API key.
    KeyId, "key id", "apikey"
);
id_type!(
    /// A login session: one refresh-token family.
    SessionId, "session id", "session"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_and_name_their_streams() {
        let id = AccountId::parse("0193a1b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b").unwrap();
        assert_eq!(id.stream(), "account-0193a1b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b");
        assert!(KeyId::parse("00000000-0000-0000-0000-000000000000").is_err());
        assert!(UserId::parse("not-a-uuid").is_err());
        assert!(SessionId::parse(&"a".repeat(10_000)).is_err());
    }
}
