//! API keys: scoped, hashed at rest, shown once.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::DomainError;
use crate::domain_events;
use crate::ids::{AccountId, KeyId};
use crate::scope::Scopes;
use crate::secret::SecretHash;

/// Longest key name.
pub const MAX_NAME_CHARS: usize = 100;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyCreated {
    pub key_id: KeyId,
    pub account_id: AccountId,
    pub name: String,
    pub scopes: Scopes,
    pub secret_hash: SecretHash,
    /// The last 4 characters of the secret.
    pub hint: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyRevoked {
    pub key_id: KeyId,
    pub account_id: AccountId,
    pub reason: String,
    pub revoked_at: DateTime<Utc>,
}

domain_events!(
    /// Events of the `apikey-<id>` stream.
    ApiKeyEvent {
        Created(ApiKeyCreated) = "ApiKeyCreated.v1",
        Revoked(ApiKeyRevoked) = "ApiKeyRevoked.v1",
    }
);

/// Why a presented key secret is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the key was revoked")]
    Revoked,
    #[error("the key expired")]
    Expired,
    #[error("the secret does not match the key")]
    WrongSecret,
}

/// A key as folded from its stream.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKey {
    pub id: KeyId,
    pub account_id: AccountId,
    pub name: String,
    pub scopes: Scopes,
    pub hint: String,
    secret_hash: SecretHash,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiKey {
    /// Decides the creation of a key whose secret hashes to `secret_hash`.
    #[allow(clippy::too_many_arguments)]
    pub fn create(
        id: KeyId,
        account_id: AccountId,
        name: &str,
        scopes: Scopes,
        secret_hash: SecretHash,
        hint: String,
        expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<ApiKeyEvent, DomainError> {
        let name = name.trim();
        if name.is_empty()
            || name.chars().count() > MAX_NAME_CHARS
            || name.chars().any(char::is_control)
        {
            return Err(DomainError::invalid(
                "name",
                format!("1 to {MAX_NAME_CHARS} printable characters"),
            ));
        }
        if expires_at.is_some_and(|at| at <= now) {
            return Err(DomainError::invalid("expires_at", "must be in the future"));
        }
        Ok(ApiKeyEvent::Created(ApiKeyCreated {
            key_id: id,
            account_id,
            name: name.to_string(),
            scopes,
            secret_hash,
            hint,
            expires_at,
            created_at: now,
        }))
    }

    pub fn fold<'a>(events: impl IntoIterator<Item = &'a ApiKeyEvent>) -> Option<Self> {
        let mut key: Option<Self> = None;
        for event in events {
            match (event, key.as_mut()) {
                (ApiKeyEvent::Created(e), _) => {
                    key = Some(Self {
                        id: e.key_id,
                        account_id: e.account_id,
                        name: e.name.clone(),
                        scopes: e.scopes.clone(),
                        hint: e.hint.clone(),
                        secret_hash: e.secret_hash.clone(),
                        expires_at: e.expires_at,
                        created_at: e.created_at,
                        revoked_at: None,
                    })
                }
                (ApiKeyEvent::Revoked(e), Some(k)) => k.revoked_at = Some(e.revoked_at),
                (_, None) => {}
            }
        }
        key
    }

    /// Decides whether `presented` (the hash of a presented secret) is a valid
    /// secret of this key at `now`. The secret is checked first, so a wrong
    /// secret learns nothing about the key's state.
    pub fn authenticate(&self, presented: &SecretHash, now: DateTime<Utc>) -> Result<(), KeyError> {
        if !self.secret_hash.matches(presented) {
            return Err(KeyError::WrongSecret);
        }
        if self.revoked_at.is_some() {
            return Err(KeyError::Revoked);
        }
        if self.expires_at.is_some_and(|at| now >= at) {
            return Err(KeyError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    #[test]
    fn a_key_authenticates_until_revoked_or_expired() {
        let now = Utc::now();
        let created = ApiKey::create(
            KeyId::from_uuid(uuid::Uuid::now_v7()),
            AccountId::from_uuid(uuid::Uuid::now_v7()),
            "ci",
            Scopes::parse(&["keys:read"]).unwrap(),
            SecretHash::of("s"),
            "abcd".into(),
            Some(now + Duration::hours(1)),
            now,
        )
        .unwrap();
        let key = ApiKey::fold([&created]).unwrap();
        assert_eq!(key.authenticate(&SecretHash::of("s"), now), Ok(()));
        assert_eq!(
            key.authenticate(&SecretHash::of("t"), now),
            Err(KeyError::WrongSecret)
        );
        assert_eq!(
            key.authenticate(&SecretHash::of("s"), now + Duration::hours(1)),
            Err(KeyError::Expired)
        );
        let revoked = ApiKeyEvent::Revoked(ApiKeyRevoked {
            key_id: key.id,
            account_id: key.account_id,
            reason: "leaked".into(),
            revoked_at: now,
        });
        let key = ApiKey::fold([&created, &revoked]).unwrap();
        assert_eq!(
            key.authenticate(&SecretHash::of("s"), now),
            Err(KeyError::Revoked)
        );
        assert!(
            ApiKey::create(
                key.id,
                key.account_id,
                "",
                Scopes::default(),
                SecretHash::of("s"),
                "x".into(),
                None,
                now
            )
            .is_err()
        );
    }
}
