//! The in-memory index the verifier answers from.
//!
//! Per key it keeps only what `Verify` reads — ids, an interned scope set and
//! the [`KeySecrets`] (two raw SHA-256 digests and three times) — in one
//! dense vector, with two maps of small integers into it. It can be written
//! to and restored from a snapshot (see [`crate::snapshot`]).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use gatehouse_crypto::jwt::TokenVerifier;
use gatehouse_domain::apikey::ApiKeyEvent;
use gatehouse_domain::catalogue::{self, Catalogue, ScopeEvent};
use gatehouse_domain::ids::{AccountId, KeyId, SessionId};
use gatehouse_domain::keysecrets::{KeySecrets, nanos};
use gatehouse_domain::scope::Scopes;
use gatehouse_domain::session::{Session, SessionEvent};
use gatehouse_domain::signing::SigningKeyEvent;
use gatehouse_eventstore::RecordedEvent;
use serde::{Deserialize, Serialize};

use crate::heads::{SessionHead, SessionHeads};

/// One key, as `Verify` needs it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyRecord {
    pub id: KeyId,
    pub account_id: AccountId,
    /// Index into the interned scope sets.
    scopes: u32,
    pub secrets: KeySecrets,
}

impl KeyRecord {
    pub(crate) fn scope_set(&self) -> u32 {
        self.scopes
    }
}

/// An event of a small stream (signing keys, the catalogue), kept as read
/// so a snapshot can rebuild those parts by folding them again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct KeptEvent {
    pub stream: String,
    pub event_type: String,
    pub payload: String,
}

/// Keys, revoked sessions, signing keys and the scope catalogue, as of `position`.
pub struct Index {
    pub(crate) keys: Vec<KeyRecord>,
    by_id: HashMap<KeyId, u32>,
    /// SHA-256 of every current and previous secret → its key's slot.
    by_hash: HashMap<[u8; 32], u32>,
    /// Distinct scope sets: a million keys share a few dozen.
    pub(crate) scope_sets: Vec<Scopes>,
    scope_ids: HashMap<Scopes, u32>,
    /// Revoked sessions → when (Unix ns), so they can be forgotten once
    /// their last access token has expired.
    pub(crate) revoked_sessions: HashMap<SessionId, i64>,
    /// Sessions revoked before this (Unix ns) have been forgotten.
    pub(crate) pruned_before: i64,
    tokens: TokenVerifier,
    /// Which scopes are live: grants are resolved against it on every call.
    catalogue: Catalogue,
    pub(crate) kept: Vec<KeptEvent>,
    /// Live sessions' heads, in an issuer's index only (see [`crate::heads`]).
    heads: Option<SessionHeads>,
    /// The last log position folded in.
    pub position: u64,
    /// What [`Index::new`] was given, for an index restored from a snapshot.
    pub(crate) settings: (String, String, u64),
}

impl Index {
    pub fn new(issuer: &str, audience: &str, leeway_secs: u64) -> Self {
        Self {
            keys: Vec::new(),
            by_id: HashMap::new(),
            by_hash: HashMap::new(),
            scope_sets: Vec::new(),
            scope_ids: HashMap::new(),
            revoked_sessions: HashMap::new(),
            pruned_before: i64::MIN,
            tokens: TokenVerifier::new(issuer, audience, leeway_secs),
            catalogue: Catalogue::default(),
            kept: Vec::new(),
            heads: None,
            position: 0,
            settings: (issuer.to_string(), audience.to_string(), leeway_secs),
        }
    }

    /// Keeps live sessions' heads too, for an issuer that refreshes from
    /// memory (a verifier has no use for them).
    pub fn keeping_session_heads(mut self) -> Self {
        self.heads = Some(SessionHeads::default());
        self
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
            "session" => self.apply_session(event),
            catalogue::STREAM | "signingkey"
                if self.apply_small(stream, &event.event_type, &event.payload) =>
            {
                self.kept.push(KeptEvent {
                    stream: stream.to_string(),
                    event_type: event.event_type.clone(),
                    payload: event.payload.to_string(),
                });
            }
            _ => {}
        }
    }

    fn apply_session(&mut self, event: &RecordedEvent) {
        // A verifier only reads revocations: other events are not decoded.
        if self.heads.is_none() && !event.event_type.starts_with("SessionRevoked.") {
            return;
        }
        let Ok(Some(decoded)) = SessionEvent::decode(&event.event_type, &event.payload) else {
            return;
        };
        if let SessionEvent::Revoked(r) = &decoded {
            self.revoked_sessions
                .insert(r.session_id, nanos(r.revoked_at));
        }
        let scopes = match &decoded {
            SessionEvent::Started(s) if self.heads.is_some() => self.intern(&s.scopes),
            _ => None,
        };
        if let Some(heads) = self.heads.as_mut() {
            heads.apply(&decoded, event.stream_version, scopes);
        }
    }

    /// Folds an event of the catalogue or a signing key; whether it was one.
    pub(crate) fn apply_small(
        &mut self,
        stream: &str,
        event_type: &str,
        payload: &serde_json::Value,
    ) -> bool {
        if stream == catalogue::STREAM {
            if let Ok(Some(e)) = ScopeEvent::decode(event_type, payload) {
                self.catalogue.apply(&e);
                return true;
            }
            return false;
        }
        match SigningKeyEvent::decode(event_type, payload) {
            Ok(Some(SigningKeyEvent::Created(c))) => {
                if let Err(error) = self.tokens.insert_key(&c.kid, c.alg, &c.public_key) {
                    tracing::error!(kid = %c.kid, %error, "unusable signing key in the log");
                }
                true
            }
            Ok(Some(SigningKeyEvent::Retired(r))) => {
                self.tokens
                    .retire_key(&r.kid, r.published_until.timestamp());
                true
            }
            _ => false,
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
        let slot = match (self.by_id.get(&key_id).copied(), event) {
            (Some(slot), _) => slot,
            (None, ApiKeyEvent::Created(c)) => {
                // Past 2^32 keys or scope sets (terabytes of memory), a new
                // key is not indexed: refused, never mistaken for another.
                let Some(scopes) = self.intern(&c.scopes) else {
                    tracing::error!(key = %c.key_id, "the index is full; the key is refused");
                    return;
                };
                let record = KeyRecord {
                    id: c.key_id,
                    account_id: c.account_id,
                    scopes,
                    secrets: KeySecrets::created(c),
                };
                self.push(record);
                return;
            }
            (None, _) => return,
        };
        // A secret two rotations old can never authenticate again: forget it.
        self.forget_digests(slot);
        if let ApiKeyEvent::Created(c) = event {
            // A second `Created` of a key starts it over, as the aggregate does.
            let Some(scopes) = self.intern(&c.scopes) else {
                tracing::error!(key = %c.key_id, "the index is full; the key keeps its scopes");
                return;
            };
            let record = &mut self.keys[slot as usize];
            record.account_id = c.account_id;
            record.scopes = scopes;
        }
        self.keys[slot as usize].secrets.record(event);
        self.index_digests(slot);
    }

    fn push(&mut self, record: KeyRecord) {
        let Ok(slot) = u32::try_from(self.keys.len()) else {
            tracing::error!(key = %record.id, "the index is full; the key is refused");
            return;
        };
        self.by_id.insert(record.id, slot);
        self.keys.push(record);
        self.index_digests(slot);
    }

    fn forget_digests(&mut self, slot: u32) {
        for digest in self.keys[slot as usize].secrets.digests() {
            if self.by_hash.get(&digest) == Some(&slot) {
                self.by_hash.remove(&digest);
            }
        }
    }

    fn index_digests(&mut self, slot: u32) {
        for digest in self.keys[slot as usize].secrets.digests() {
            self.by_hash.insert(digest, slot);
        }
    }

    /// The id of `scopes`' interned set; `None` past 2^32 sets.
    fn intern(&mut self, scopes: &Scopes) -> Option<u32> {
        if let Some(&id) = self.scope_ids.get(scopes) {
            return Some(id);
        }
        let id = u32::try_from(self.scope_sets.len()).ok()?;
        self.scope_sets.push(scopes.clone());
        self.scope_ids.insert(scopes.clone(), id);
        Some(id)
    }

    /// Rebuilds the maps over `keys` and `scope_sets` (after a snapshot load).
    pub(crate) fn reindex(&mut self) {
        self.by_id = HashMap::with_capacity(self.keys.len());
        self.by_hash = HashMap::with_capacity(self.keys.len() * 5 / 4);
        for slot in 0..self.keys.len() {
            let record = &self.keys[slot];
            self.by_id.insert(record.id, slot as u32);
            for digest in record.secrets.digests() {
                self.by_hash.insert(digest, slot as u32);
            }
        }
        self.scope_ids = self
            .scope_sets
            .iter()
            .enumerate()
            .map(|(id, scopes)| (scopes.clone(), id as u32))
            .collect();
    }

    /// The key a secret's SHA-256 belongs to, with its scopes.
    pub fn key_by_digest(&self, digest: &[u8; 32]) -> Option<(&KeyRecord, &Scopes)> {
        self.by_hash.get(digest).map(|&slot| self.slot(slot))
    }

    pub fn key(&self, id: &KeyId) -> Option<(&KeyRecord, &Scopes)> {
        self.by_id.get(id).map(|&slot| self.slot(slot))
    }

    fn slot(&self, slot: u32) -> (&KeyRecord, &Scopes) {
        let record = &self.keys[slot as usize];
        (record, &self.scope_sets[record.scopes as usize])
    }

    /// A live session's head with its grants, if this index keeps heads and
    /// has this one.
    pub fn session_head(&self, id: &SessionId) -> Option<(&SessionHead, &Scopes)> {
        let head = self.heads.as_ref()?.get(id)?;
        Some((head, self.scope_sets.get(head.scopes as usize)?))
    }

    /// Keeps `session` as of `version` of its stream (read from the log, or
    /// just appended by this issuer), unless the head here is as new.
    pub fn remember_session(&mut self, session: &Session, version: u64) {
        if self.heads.is_none() {
            return;
        }
        let Some(scopes) = self.intern(&session.scopes) else {
            return;
        };
        if let Some(heads) = self.heads.as_mut() {
            heads.remember(session, version, scopes);
        }
    }

    /// How many session heads are kept.
    pub fn session_head_count(&self) -> usize {
        self.heads.as_ref().map_or(0, SessionHeads::len)
    }

    pub fn session_revoked(&self, id: &SessionId) -> bool {
        self.revoked_sessions.contains_key(id)
    }

    /// Forgets sessions revoked before `before`: every access token of such
    /// a session was minted before its revocation, so once `before` is a
    /// token lifetime (plus clock leeway) ago, all of them have expired and
    /// the signature check refuses them without this set.
    pub fn prune_sessions(&mut self, before: DateTime<Utc>) -> usize {
        let before = nanos(before);
        self.pruned_before = self.pruned_before.max(before);
        if let Some(heads) = self.heads.as_mut() {
            heads.prune(before);
        }
        let count = self.revoked_sessions.len();
        self.revoked_sessions.retain(|_, at| *at >= before);
        count - self.revoked_sessions.len()
    }

    /// The signing-key events folded in, in log order (an issuer's keyring
    /// starts from them instead of reading the log again).
    pub fn signing_key_events(&self) -> Vec<SigningKeyEvent> {
        self.kept
            .iter()
            .filter(|kept| kept.stream != catalogue::STREAM)
            .filter_map(|kept| {
                let payload = serde_json::from_str(&kept.payload).ok()?;
                SigningKeyEvent::decode(&kept.event_type, &payload).ok()?
            })
            .collect()
    }

    pub fn tokens(&self) -> &TokenVerifier {
        &self.tokens
    }

    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    /// An empty index with the same token settings.
    pub fn empty_like(&self) -> Self {
        let (issuer, audience, leeway) = &self.settings;
        let empty = Self::new(issuer, audience, *leeway);
        match self.heads {
            Some(_) => empty.keeping_session_heads(),
            None => empty,
        }
    }

    /// How many keys are indexed.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Sessions revoked before this have been forgotten (`None`: none were).
    pub fn pruned_before(&self) -> Option<DateTime<Utc>> {
        (self.pruned_before != i64::MIN).then(|| DateTime::from_timestamp_nanos(self.pruned_before))
    }

    /// How many revoked sessions are remembered.
    pub fn revoked_session_count(&self) -> usize {
        self.revoked_sessions.len()
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, Utc};
    use gatehouse_domain::apikey::{ApiKey, NewApiKey};
    use gatehouse_domain::ids::{AccountId, KeyId};
    use gatehouse_domain::scope::Scopes;
    use gatehouse_domain::secret::SecretHash;
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
            NewApiKey {
                id: key_id,
                account_id: AccountId::from_uuid(uuid_v7()),
                name: "k",
                scopes: Scopes::parse(&["keys:read"]).unwrap(),
                secret_hash: SecretHash::of("s1"),
                hint: "s1".into(),
                expires_at: None,
            },
            now,
        )
        .unwrap();
        let mut index = Index::new("iss", "aud", 0);
        index.apply(&recorded(1, &stream, &created));
        let mut key = None;
        ApiKey::apply(&mut key, &created);
        let mut position = 1;
        for next in ["s2", "s3"] {
            for event in key
                .clone()
                .unwrap()
                .rotate(
                    SecretHash::of(next),
                    next.into(),
                    gatehouse_domain::apikey::GracePeriod::parse(Some(Duration::hours(1))).unwrap(),
                    now,
                )
                .unwrap()
            {
                position += 1;
                index.apply(&recorded(position, &stream, &event));
                ApiKey::apply(&mut key, &event);
            }
        }
        let found = |s: &str| index.key_by_digest(&SecretHash::digest_of(s)).is_some();
        assert!(!found("s1"), "two rotations old");
        assert!(found("s2"), "in grace");
        assert!(found("s3"), "current");
        assert_eq!(index.position, position);
        assert_eq!(
            index.key(&key_id).unwrap().0.secrets,
            key.unwrap().secrets()
        );
    }

    fn uuid_v7() -> uuid::Uuid {
        uuid::Uuid::now_v7()
    }
}
