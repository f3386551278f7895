//! The in-memory index the verifier answers from.

use std::collections::{HashMap, HashSet};

use gatehouse_crypto::jwt::TokenVerifier;
use gatehouse_domain::apikey::{ApiKey, ApiKeyEvent};
use gatehouse_domain::catalogue::{self, Catalogue, ScopeEvent};
use gatehouse_domain::ids::{KeyId, SessionId};
use gatehouse_domain::secret::SecretHash;
use gatehouse_domain::session::SessionEvent;
use gatehouse_domain::signing::SigningKeyEvent;
use gatehouse_eventstore::RecordedEvent;

/// Keys, revoked sessions, signing keys and the scope catalogue, as of `position`.
pub struct Index {
    keys: HashMap<KeyId, ApiKey>,
    /// SHA-256 of every current and previous secret → its key; raw bytes,
    /// not hex strings (32 bytes inline instead of a 64-byte allocation).
    by_hash: HashMap<[u8; 32], KeyId>,
    revoked_sessions: HashSet<SessionId>,
    tokens: TokenVerifier,
    /// Which scopes are live: grants are resolved against it on every call.
    catalogue: Catalogue,
    /// The last log position folded in.
    pub position: u64,
}

impl Index {
    pub fn new(issuer: &str, audience: &str, leeway_secs: u64) -> Self {
        Self {
            keys: HashMap::new(),
            by_hash: HashMap::new(),
            revoked_sessions: HashSet::new(),
            tokens: TokenVerifier::new(issuer, audience, leeway_secs),
            catalogue: Catalogue::default(),
            position: 0,
        }
    }

    /// Folds one event in. Events of no interest only move the position.
    pub fn apply(&mut self, event: &RecordedEvent) {
        self.position = self.position.max(event.position);
        let stream = event.stream_id.as_str();
        let (kind, _) = stream.split_once('-').unwrap_or((stream, ""));
        match kind {
            "apikey" => {
                if let Ok(Some(e)) = ApiKeyEvent::decode(&event.event_type, &event.payload) {
                    self.apply_key(&e);
                }
            }
            "session" => {
                if let Ok(Some(SessionEvent::Revoked(r))) =
                    SessionEvent::decode(&event.event_type, &event.payload)
                {
                    self.revoked_sessions.insert(r.session_id);
                }
            }
            catalogue::STREAM => {
                if let Ok(Some(e)) = ScopeEvent::decode(&event.event_type, &event.payload) {
                    self.catalogue.apply(&e);
                }
            }
            "signingkey" => match SigningKeyEvent::decode(&event.event_type, &event.payload) {
                Ok(Some(SigningKeyEvent::Created(c))) => {
                    if let Err(error) = self.tokens.insert_key(&c.kid, c.alg, &c.public_key) {
                        tracing::error!(kid = %c.kid, %error, "unusable signing key in the log");
                    }
                }
                Ok(Some(SigningKeyEvent::Retired(r))) => {
                    self.tokens
                        .retire_key(&r.kid, r.published_until.timestamp());
                }
                _ => {}
            },
            _ => {}
        }
    }

    fn apply_key(&mut self, event: &ApiKeyEvent) {
        let key_id = match event {
            ApiKeyEvent::Created(c) => c.key_id,
            ApiKeyEvent::Rotated(r) => r.key_id,
            ApiKeyEvent::GraceExpired(g) => g.key_id,
            ApiKeyEvent::Revoked(r) => r.key_id,
            ApiKeyEvent::Expired(x) => x.key_id,
            ApiKeyEvent::Deleted(d) => d.key_id,
        };
        let mut key = self.keys.remove(&key_id);
        let before: Vec<[u8; 32]> = key
            .iter()
            .flat_map(|k| k.secret_hashes().filter_map(|h| h.digest()))
            .collect();
        ApiKey::apply(&mut key, event);
        let Some(key) = key else { return };
        let after: Vec<[u8; 32]> = key.secret_hashes().filter_map(|h| h.digest()).collect();
        // A secret two rotations old can never authenticate again: forget it.
        for stale in before.iter().filter(|h| !after.contains(h)) {
            self.by_hash.remove(stale);
        }
        for hash in after {
            self.by_hash.insert(hash, key_id);
        }
        self.keys.insert(key_id, key);
    }

    /// The key a secret hash belongs to.
    pub fn key_by_hash(&self, hash: &SecretHash) -> Option<&ApiKey> {
        self.by_hash
            .get(&hash.digest()?)
            .and_then(|id| self.keys.get(id))
    }

    pub fn key(&self, id: &KeyId) -> Option<&ApiKey> {
        self.keys.get(id)
    }

    pub fn session_revoked(&self, id: &SessionId) -> bool {
        self.revoked_sessions.contains(id)
    }

    pub fn tokens(&self) -> &TokenVerifier {
        &self.tokens
    }

    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    /// How many keys are indexed.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, Utc};
    use gatehouse_domain::ids::{AccountId, KeyId};
    use gatehouse_domain::scope::Scopes;
    use gatehouse_eventstore::StreamId;

    use super::*;

    fn recorded(position: u64, stream: &str, event: &ApiKeyEvent) -> RecordedEvent {
        RecordedEvent {
            position,
            stream_id: StreamId::parse(stream).unwrap(),
            stream_version: position,
            event_type: event.event_type().into(),
            payload: event.payload(),
            metadata: Default::default(),
            occurred_at: Utc::now(),
        }
    }

    #[test]
    fn rotations_keep_two_secrets_indexed_and_forget_older_ones() {
        let now = Utc::now();
        let key_id = KeyId::from_uuid(uuid_v7());
        let stream = key_id.stream();
        let created = ApiKey::create(
            key_id,
            AccountId::from_uuid(uuid_v7()),
            "k",
            Scopes::parse(&["keys:read"]).unwrap(),
            SecretHash::of("s1"),
            "s1".into(),
            None,
            now,
        )
        .unwrap();
        let mut index = Index::new("iss", "aud", 0);
        index.apply(&recorded(1, &stream, &created));
        let mut position = 1;
        for next in ["s2", "s3"] {
            let key = index.key(&key_id).unwrap().clone();
            for event in key
                .rotate(SecretHash::of(next), next.into(), Duration::hours(1), now)
                .unwrap()
            {
                position += 1;
                index.apply(&recorded(position, &stream, &event));
            }
        }
        assert!(
            index.key_by_hash(&SecretHash::of("s1")).is_none(),
            "two rotations old"
        );
        assert!(
            index.key_by_hash(&SecretHash::of("s2")).is_some(),
            "in grace"
        );
        assert!(
            index.key_by_hash(&SecretHash::of("s3")).is_some(),
            "current"
        );
        assert_eq!(index.position, position);
    }

    fn uuid_v7() -> uuid::Uuid {
        uuid::Uuid::now_v7()
    }
}
