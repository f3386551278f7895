//! Session heads: what an issuer needs to decide a refresh from memory,
//! per live session — the current refresh token's SHA-256, the stream's
//! version (the expected version of the rotation it appends), the refresh
//! deadline, the start, the owner and the grants (interned with the keys'
//! scope sets). Spent tokens are not kept: one that is not current is
//! decided on the session's stream, where reuse is told from a stranger.
//!
//! Heads are a cache over the log, not a copy of it: they are not in the
//! snapshot, a session started before the snapshot the index loaded has
//! none until its first refresh reads its stream, and revoked or long
//! expired sessions are dropped. A head is only ever moved one stream
//! version at a time; one that missed a version is dropped, so a head is
//! either the stream's state at its version or absent — and a decision
//! taken on a head that is behind fails its append's expected version.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use gatehouse_domain::ids::{AccountId, SessionId, UserId};
use gatehouse_domain::keysecrets::nanos;
use gatehouse_domain::scope::Scopes;
use gatehouse_domain::secret::SecretHash;
use gatehouse_domain::session::{Session, SessionEvent};

/// One live session's head.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionHead {
    pub user_id: UserId,
    pub account_id: AccountId,
    /// Index into the index's interned scope sets.
    pub(crate) scopes: u32,
    current: [u8; 32],
    refresh_expires_at: i64,
    started_at: i64,
    /// The session stream's version this head is the state at.
    pub version: u64,
}

/// The heads, by session.
#[derive(Debug, Default)]
pub(crate) struct SessionHeads {
    heads: HashMap<SessionId, SessionHead>,
}

impl SessionHeads {
    /// Folds a session event at `version` of its stream (scopes already
    /// interned by the caller for a start).
    pub(crate) fn apply(&mut self, event: &SessionEvent, version: u64, scopes: Option<u32>) {
        match event {
            SessionEvent::Started(s) => {
                let (Some(scopes), Some(current)) = (scopes, s.refresh_hash.digest()) else {
                    return;
                };
                if version == 1 {
                    self.heads.insert(
                        s.session_id,
                        SessionHead {
                            user_id: s.user_id,
                            account_id: s.account_id,
                            scopes,
                            current,
                            refresh_expires_at: nanos(s.refresh_expires_at),
                            started_at: nanos(s.started_at),
                            version,
                        },
                    );
                }
            }
            SessionEvent::Rotated(r) => {
                let Some(head) = self.heads.get_mut(&r.session_id) else {
                    return;
                };
                match (head.version + 1).cmp(&version) {
                    // Already folded (this issuer's own append, applied at once).
                    std::cmp::Ordering::Greater => {}
                    std::cmp::Ordering::Equal => match r.refresh_hash.digest() {
                        Some(current) => {
                            head.current = current;
                            head.refresh_expires_at = nanos(r.refresh_expires_at);
                            head.version = version;
                        }
                        None => {
                            self.heads.remove(&r.session_id);
                        }
                    },
                    // A version was missed: the head is no longer the stream's.
                    std::cmp::Ordering::Less => {
                        self.heads.remove(&r.session_id);
                    }
                }
            }
            // Refused from the revoked sessions (or the stream) from now on.
            SessionEvent::Revoked(r) => {
                self.heads.remove(&r.session_id);
            }
        }
    }

    /// Keeps `session` (folded from its stream at `version`, or just
    /// decided and appended at it) unless the head here is as new already.
    /// A revoked session's head is dropped.
    pub(crate) fn remember(&mut self, session: &Session, version: u64, scopes: u32) {
        if session.revoked.is_some() {
            self.heads.remove(&session.id);
            return;
        }
        let Some(current) = session.current().digest() else {
            return;
        };
        if self
            .heads
            .get(&session.id)
            .is_some_and(|head| head.version >= version)
        {
            return;
        }
        self.heads.insert(
            session.id,
            SessionHead {
                user_id: session.user_id,
                account_id: session.account_id,
                scopes,
                current,
                refresh_expires_at: nanos(session.refresh_expires_at),
                started_at: nanos(session.started_at),
                version,
            },
        );
    }

    pub(crate) fn get(&self, id: &SessionId) -> Option<&SessionHead> {
        self.heads.get(id)
    }

    /// Drops heads whose refresh token expired before `before` (their
    /// next refresh, if any, reads the stream and is refused there).
    pub(crate) fn prune(&mut self, before: i64) {
        self.heads
            .retain(|_, head| head.refresh_expires_at >= before);
    }

    pub(crate) fn len(&self) -> usize {
        self.heads.len()
    }
}

impl SessionHead {
    /// The session this head is the state of, for the domain's decision
    /// ([`Session::from_head`]: a spent token looks unknown).
    pub fn session(&self, id: SessionId, scopes: &Scopes) -> Session {
        Session::from_head(
            id,
            self.user_id,
            self.account_id,
            scopes.clone(),
            SecretHash::from_digest(&self.current),
            DateTime::<Utc>::from_timestamp_nanos(self.refresh_expires_at),
            DateTime::<Utc>::from_timestamp_nanos(self.started_at),
        )
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use gatehouse_domain::session::{RefreshTokenRotated, RevocationReason, SessionLifetime};
    use gatehouse_eventstore::{RecordedEvent, StreamId};

    use super::*;
    use crate::index::Index;

    fn recorded(position: u64, version: u64, event: &SessionEvent, id: SessionId) -> RecordedEvent {
        RecordedEvent {
            position,
            stream_id: StreamId::parse(id.stream()).unwrap(),
            stream_version: version,
            event_type: event.event_type().into(),
            payload: event.payload(),
            metadata: Default::default(),
            occurred_at: Utc::now(),
        }
    }

    fn rotated(id: SessionId, from: &str, to: &str) -> SessionEvent {
        SessionEvent::Rotated(RefreshTokenRotated {
            session_id: id,
            previous_hash: SecretHash::of(from),
            refresh_hash: SecretHash::of(to),
            refresh_expires_at: Utc::now() + Duration::days(1),
            rotated_at: Utc::now(),
        })
    }

    /// A head moves one stream version at a time: a version seen twice
    /// (this issuer's own append, then the tail's copy) changes nothing, a
    /// missed one drops the head, and a revocation drops it.
    #[test]
    fn a_head_is_the_stream_at_its_version_or_absent() {
        let id = SessionId::from_uuid(uuid::Uuid::now_v7());
        let lifetime = SessionLifetime {
            idle: Duration::days(1),
            max_lifetime: Duration::days(30),
        };
        let started = Session::start(
            id,
            UserId::from_uuid(uuid::Uuid::now_v7()),
            AccountId::from_uuid(uuid::Uuid::now_v7()),
            Scopes::parse(&["keys:read"]).unwrap(),
            SecretHash::of("t0"),
            Utc::now(),
            lifetime,
        );
        let current = |index: &Index| {
            index
                .session_head(&id)
                .map(|(head, scopes)| (head.version, head.session(id, scopes).current().clone()))
        };
        let mut verifier = Index::new("iss", "aud", 0);
        verifier.apply(&recorded(1, 1, &started, id));
        assert_eq!(current(&verifier), None, "a verifier keeps no heads");

        let mut index = Index::new("iss", "aud", 0).keeping_session_heads();
        index.apply(&recorded(1, 1, &started, id));
        assert_eq!(current(&index), Some((1, SecretHash::of("t0"))));
        let (head, scopes) = index.session_head(&id).unwrap();
        assert_eq!(scopes, &Scopes::parse(&["keys:read"]).unwrap());
        let mut session = head.session(id, scopes);
        let one = rotated(id, "t0", "t1");
        session.apply(&one);
        index.remember_session(&session, 2);
        index.apply(&recorded(2, 2, &one, id));
        assert_eq!(
            current(&index),
            Some((2, SecretHash::of("t1"))),
            "applied once"
        );
        // Version 3 never arrived: the head at 2 is not the stream any more.
        index.apply(&recorded(4, 4, &rotated(id, "t2", "t3"), id));
        assert_eq!(current(&index), None);
        // Read from the stream at 4, kept again; an older read is ignored.
        session.apply(&rotated(id, "t1", "t3"));
        index.remember_session(&session, 4);
        index.remember_session(&head_at("t1", id), 2);
        assert_eq!(current(&index), Some((4, SecretHash::of("t3"))));
        let revoked = SessionEvent::Revoked(gatehouse_domain::session::SessionRevoked {
            session_id: id,
            user_id: session.user_id,
            account_id: session.account_id,
            reason: RevocationReason::Logout,
            revoked_at: Utc::now(),
        });
        index.apply(&recorded(5, 5, &revoked, id));
        assert_eq!(current(&index), None);
        assert!(index.session_revoked(&id));
    }

    fn head_at(token: &str, id: SessionId) -> Session {
        Session::from_head(
            id,
            UserId::from_uuid(uuid::Uuid::now_v7()),
            AccountId::from_uuid(uuid::Uuid::now_v7()),
            Scopes::default(),
            SecretHash::of(token),
            Utc::now() + Duration::days(1),
            Utc::now(),
        )
    }
}
