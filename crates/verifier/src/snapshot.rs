//! The index as bytes: what a verifier stores every so many events and
//! starts from, so start-up folds only the events after the snapshot.
//!
//! Format: an 8-byte tag with the format version, then the fields in
//! postcard (compact, varint-coded serde). A tag this build does not know
//! makes the snapshot unusable, and start-up replays the log instead.

use std::collections::HashMap;

use gatehouse_domain::ids::SessionId;
use gatehouse_domain::scope::Scopes;
use serde::{Deserialize, Serialize};

use crate::index::{Index, KeptEvent, KeyRecord};

/// The snapshot's name in the store.
pub const NAME: &str = "verifier-index";

/// Format 1. Change the last byte whenever what is serialized changes.
const TAG: [u8; 8] = *b"GHVIDX\x00\x01";

/// How events are folded into the index. Bump it whenever decoding or
/// folding changes (a new event type, a fixed rule): a snapshot folded by
/// other rules would otherwise carry them on, silently. Snapshots also
/// record the build's version, so one written by another release — which
/// may not know every event type in the log — is never loaded.
const FOLD: u32 = 1;
const BUILD: &str = env!("CARGO_PKG_VERSION");

#[derive(Serialize)]
struct Out<'a> {
    fold: u32,
    build: &'a str,
    position: u64,
    pruned_before: i64,
    scope_sets: &'a [Scopes],
    keys: &'a [KeyRecord],
    revoked_sessions: &'a HashMap<SessionId, i64>,
    kept: &'a [KeptEvent],
}

#[derive(Deserialize)]
struct In {
    fold: u32,
    build: String,
    position: u64,
    pruned_before: i64,
    scope_sets: Vec<Scopes>,
    keys: Vec<KeyRecord>,
    revoked_sessions: HashMap<SessionId, i64>,
    kept: Vec<KeptEvent>,
}

/// Why a snapshot could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("written by another format (tag {0:?})")]
    Format(Vec<u8>),
    #[error("folded by build {build} (rules {fold}); this is {BUILD} (rules {FOLD})")]
    Build { build: String, fold: u32 },
    #[error("undecodable: {0}")]
    Decode(#[from] postcard::Error),
    #[error("unencodable: {0}")]
    Encode(postcard::Error),
    #[error("a key refers to scope set {0}, which it does not hold")]
    ScopeSet(u32),
    #[error("a kept event is unreadable: {0}")]
    Kept(#[from] serde_json::Error),
}

impl Index {
    /// The index as snapshot bytes.
    pub fn to_snapshot(&self) -> Result<Vec<u8>, SnapshotError> {
        let out = Out {
            fold: FOLD,
            build: BUILD,
            position: self.position,
            pruned_before: self.pruned_before,
            scope_sets: &self.scope_sets,
            keys: &self.keys,
            revoked_sessions: &self.revoked_sessions,
            kept: &self.kept,
        };
        postcard::to_extend(&out, TAG.to_vec()).map_err(SnapshotError::Encode)
    }

    /// An index restored from snapshot bytes, with this index's token
    /// settings. `data` is consumed so its memory is free before the maps
    /// are built.
    pub fn from_snapshot(&self, data: Vec<u8>) -> Result<Self, SnapshotError> {
        let Some(body) = data.strip_prefix(&TAG) else {
            return Err(SnapshotError::Format(
                data.iter().take(8).copied().collect(),
            ));
        };
        let decoded: In = postcard::from_bytes(body)?;
        drop(data);
        if decoded.fold != FOLD || decoded.build != BUILD {
            return Err(SnapshotError::Build {
                build: decoded.build,
                fold: decoded.fold,
            });
        }
        if let Some(bad) = decoded
            .keys
            .iter()
            .find(|k| k.scope_set() as usize >= decoded.scope_sets.len())
        {
            return Err(SnapshotError::ScopeSet(bad.scope_set()));
        }
        let mut index = self.empty_like();
        for kept in &decoded.kept {
            let payload: serde_json::Value = serde_json::from_str(&kept.payload)?;
            index.apply_small(&kept.stream, &kept.event_type, &payload);
        }
        index.kept = decoded.kept;
        index.keys = decoded.keys;
        index.scope_sets = decoded.scope_sets;
        index.revoked_sessions = decoded.revoked_sessions;
        index.position = decoded.position;
        index.pruned_before = decoded.pruned_before;
        index.reindex();
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, Utc};
    use gatehouse_domain::apikey::{ApiKey, ApiKeyEvent, NewApiKey};
    use gatehouse_domain::ids::{AccountId, KeyId, SessionId, UserId};
    use gatehouse_domain::secret::SecretHash;
    use gatehouse_domain::session::{RevocationReason, SessionEvent, SessionRevoked};
    use gatehouse_eventstore::{RecordedEvent, StreamId};

    use super::*;

    fn recorded(
        position: u64,
        stream: &str,
        event_type: &str,
        payload: serde_json::Value,
    ) -> RecordedEvent {
        RecordedEvent {
            position,
            stream_id: StreamId::parse(stream).unwrap(),
            stream_version: position,
            event_type: event_type.into(),
            payload,
            metadata: Default::default(),
            occurred_at: Utc::now(),
        }
    }

    /// An index with keys in every state, a revoked session and shared scope sets.
    fn sample() -> (Index, Vec<String>, SessionId) {
        let now = Utc::now();
        let mut index = Index::new("iss", "aud", 5);
        let mut position = 0;
        let mut secrets = Vec::new();
        let mut apply = |index: &mut Index, stream: &str, event: &ApiKeyEvent| {
            position += 1;
            index.apply(&recorded(
                position,
                stream,
                event.event_type(),
                event.payload(),
            ));
        };
        for n in 0..40 {
            let id = KeyId::from_uuid(uuid::Uuid::now_v7());
            let secret = format!("secret-{n}");
            let scopes = if n % 2 == 0 {
                &["keys:read"][..]
            } else {
                &["keys:read", "keys:write"]
            };
            let created = ApiKey::create(
                NewApiKey {
                    id,
                    account_id: AccountId::from_uuid(uuid::Uuid::now_v7()),
                    name: "k",
                    scopes: Scopes::parse(scopes).unwrap(),
                    secret_hash: SecretHash::of(&secret),
                    hint: "hint".into(),
                    expires_at: (n % 5 == 0).then(|| now + Duration::hours(1)),
                },
                now,
            )
            .unwrap();
            let mut key = None;
            ApiKey::apply(&mut key, &created);
            apply(&mut index, &id.stream(), &created);
            secrets.push(secret);
            let mut later = Vec::new();
            if n % 3 == 0 {
                let next = format!("secret-{n}-next");
                later.extend(
                    key.clone()
                        .unwrap()
                        .rotate(
                            SecretHash::of(&next),
                            "h".into(),
                            gatehouse_domain::apikey::GracePeriod::parse(Some(Duration::minutes(
                                5,
                            )))
                            .unwrap(),
                            now,
                        )
                        .unwrap(),
                );
                secrets.push(next);
            }
            if n % 7 == 0 {
                later.extend(key.clone().unwrap().revoke("r", now).unwrap());
            }
            for event in later {
                apply(&mut index, &id.stream(), &event);
            }
        }
        let session = SessionId::from_uuid(uuid::Uuid::now_v7());
        let revoked = SessionEvent::Revoked(SessionRevoked {
            session_id: session,
            user_id: UserId::from_uuid(uuid::Uuid::now_v7()),
            account_id: AccountId::from_uuid(uuid::Uuid::now_v7()),
            reason: RevocationReason::Logout,
            revoked_at: now,
        });
        index.apply(&recorded(
            1000,
            &format!("session-{}", uuid::Uuid::now_v7()),
            revoked.event_type(),
            revoked.payload(),
        ));
        (index, secrets, session)
    }

    #[test]
    fn a_restored_index_decides_like_the_one_it_was_taken_from() {
        let (index, secrets, session) = sample();
        let restored = index.from_snapshot(index.to_snapshot().unwrap()).unwrap();
        assert_eq!(restored.position, index.position);
        assert_eq!(restored.key_count(), index.key_count());
        assert!(restored.session_revoked(&session));
        let now = Utc::now();
        for at in [now, now + Duration::minutes(10), now + Duration::hours(2)] {
            for secret in &secrets {
                let digest = SecretHash::digest_of(secret);
                let decide = |i: &Index| {
                    i.key_by_digest(&digest).map(|(k, scopes)| {
                        (
                            k.id,
                            k.account_id,
                            scopes.clone(),
                            k.secrets.authenticate(&digest, at),
                        )
                    })
                };
                let expected = decide(&index);
                assert!(expected.is_some(), "{secret} is indexed");
                assert_eq!(decide(&restored), expected, "{secret} at {at}");
            }
        }
        // Scope sets stay shared: 40 keys, two distinct sets.
        assert_eq!(restored.scope_sets.len(), 2);
    }

    #[test]
    fn foreign_or_damaged_snapshots_are_refused_not_misread() {
        let (index, _, _) = sample();
        let data = index.to_snapshot().unwrap();
        let mut other_format = data.clone();
        other_format[7] = 99;
        assert!(matches!(
            index.from_snapshot(other_format),
            Err(SnapshotError::Format(_))
        ));
        let truncated = data[..data.len() / 2].to_vec();
        assert!(matches!(
            index.from_snapshot(truncated),
            Err(SnapshotError::Decode(_))
        ));
        assert!(index.from_snapshot(Vec::new()).is_err());
        // Folded by other rules or another release: refused, not loaded.
        for (fold, build) in [(FOLD + 1, BUILD), (FOLD, "0.0.0-other")] {
            let out = Out {
                fold,
                build,
                position: index.position,
                pruned_before: index.pruned_before,
                scope_sets: &index.scope_sets,
                keys: &index.keys,
                revoked_sessions: &index.revoked_sessions,
                kept: &index.kept,
            };
            let data = postcard::to_extend(&out, TAG.to_vec()).unwrap();
            assert!(matches!(
                index.from_snapshot(data),
                Err(SnapshotError::Build { .. })
            ));
        }
    }

    #[test]
    fn pruned_sessions_are_forgotten_and_the_snapshot_says_how_far() {
        let (mut index, _, session) = sample();
        assert_eq!(index.pruned_before(), None);
        // Revoked "now": kept by a cut-off in the past, forgotten by a later one.
        assert_eq!(index.prune_sessions(Utc::now() - Duration::hours(1)), 0);
        assert!(index.session_revoked(&session));
        let cut = Utc::now() + Duration::seconds(1);
        assert_eq!(index.prune_sessions(cut), 1);
        assert!(!index.session_revoked(&session));
        let restored = index.from_snapshot(index.to_snapshot().unwrap()).unwrap();
        assert_eq!(restored.pruned_before(), Some(cut));
        assert_eq!(restored.revoked_session_count(), 0);
    }
}
