//! Login sessions: one refresh-token family, rotated on every use.
//!
//! Presenting a refresh token that was already rotated is treated as theft
//! (RFC 9700 §4.14.2): the whole family is revoked and the caller must log in
//! again.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain_events;
use crate::ids::{AccountId, SessionId, UserId};
use crate::scope::Scopes;
use crate::secret::SecretHash;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionStarted {
    pub session_id: SessionId,
    pub user_id: UserId,
    pub account_id: AccountId,
    pub scopes: Scopes,
    pub refresh_hash: SecretHash,
    pub refresh_expires_at: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefreshTokenRotated {
    pub session_id: SessionId,
    /// The hash that is now spent.
    pub previous_hash: SecretHash,
    pub refresh_hash: SecretHash,
    pub refresh_expires_at: DateTime<Utc>,
    pub rotated_at: DateTime<Utc>,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationReason {
    /// A spent refresh token was presented again.
    RefreshTokenReuse,
    Logout,
    /// The user changed their password from another session.
    PasswordChanged,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRevoked {
    pub session_id: SessionId,
    pub user_id: UserId,
    pub account_id: AccountId,
    pub reason: RevocationReason,
    pub revoked_at: DateTime<Utc>,
}

domain_events!(
    /// Events of the `session-<id>` stream.
    SessionEvent {
        Started(SessionStarted) = "SessionStarted.v1",
        Rotated(RefreshTokenRotated) = "RefreshTokenRotated.v1",
        Revoked(SessionRevoked) = "SessionRevoked.v1",
    }
);

/// How long a session may last: its refresh token dies after `idle`
/// without use, and the session after `max_lifetime` however often it is
/// refreshed (OWASP ASVS 3.3: an absolute timeout as well as an idle one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLifetime {
    /// The refresh token's lifetime, renewed by each rotation.
    pub idle: chrono::Duration,
    /// From login; a refresh never reaches past it.
    pub max_lifetime: chrono::Duration,
}

/// Why a refresh or logout was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("the session was revoked")]
    Revoked,
    #[error("the refresh token expired")]
    Expired,
    #[error("the session reached its maximum lifetime")]
    LifetimeOver,
    #[error("the refresh token does not belong to this session")]
    UnknownToken,
}

/// What presenting a refresh token leads to.
#[derive(Debug, Clone, PartialEq)]
pub enum RefreshDecision {
    /// The current token: rotate to the new one.
    Rotate(SessionEvent),
    /// A spent token: revoke the family (append this event), then refuse.
    RevokeForReuse(SessionEvent),
}

/// A session as folded from its stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub id: SessionId,
    pub user_id: UserId,
    pub account_id: AccountId,
    pub scopes: Scopes,
    current: SecretHash,
    spent: Vec<SecretHash>,
    pub refresh_expires_at: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub revoked: Option<RevocationReason>,
}

impl Session {
    /// Decides a new session for a user who just proved their password.
    pub fn start(
        id: SessionId,
        user_id: UserId,
        account_id: AccountId,
        scopes: Scopes,
        refresh_hash: SecretHash,
        now: DateTime<Utc>,
        lifetime: SessionLifetime,
    ) -> SessionEvent {
        SessionEvent::Started(SessionStarted {
            session_id: id,
            user_id,
            account_id,
            scopes,
            refresh_hash,
            refresh_expires_at: now + lifetime.idle.min(lifetime.max_lifetime),
            started_at: now,
        })
    }

    /// A session as an in-memory head keeps it: no spent hashes. Deciding
    /// on it answers as the whole stream would for the current token and
    /// for a revoked session; a spent token looks unknown
    /// ([`SessionError::UnknownToken`]), and the caller must decide that one
    /// on the whole stream (it may be a reuse).
    pub fn from_head(
        id: SessionId,
        user_id: UserId,
        account_id: AccountId,
        scopes: Scopes,
        current: SecretHash,
        refresh_expires_at: DateTime<Utc>,
        started_at: DateTime<Utc>,
    ) -> Self {
        Self {
            id,
            user_id,
            account_id,
            scopes,
            current,
            spent: Vec::new(),
            refresh_expires_at,
            started_at,
            revoked: None,
        }
    }

    /// The hash of the refresh token that rotates this session now.
    pub fn current(&self) -> &SecretHash {
        &self.current
    }

    /// When this session ends however often it is refreshed. Taken from the
    /// setting at the time of asking, so lowering it reaches every session.
    pub fn ends_at(&self, lifetime: SessionLifetime) -> DateTime<Utc> {
        self.started_at + lifetime.max_lifetime
    }

    /// Folds the stream; `None` if it has not started.
    pub fn fold<'a>(events: impl IntoIterator<Item = &'a SessionEvent>) -> Option<Self> {
        let mut session: Option<Self> = None;
        for event in events {
            match (event, session.as_mut()) {
                (SessionEvent::Started(e), _) => {
                    session = Some(Self {
                        id: e.session_id,
                        user_id: e.user_id,
                        account_id: e.account_id,
                        scopes: e.scopes.clone(),
                        current: e.refresh_hash.clone(),
                        spent: Vec::new(),
                        refresh_expires_at: e.refresh_expires_at,
                        started_at: e.started_at,
                        revoked: None,
                    })
                }
                (event, Some(s)) => s.apply(event),
                (_, None) => {}
            }
        }
        session
    }

    /// Folds one later event of the stream in (a second `Started` is
    /// ignored: a session starts once).
    pub fn apply(&mut self, event: &SessionEvent) {
        match event {
            SessionEvent::Started(_) => {}
            SessionEvent::Rotated(e) => {
                let previous = std::mem::replace(&mut self.current, e.refresh_hash.clone());
                self.spent.push(previous);
                self.refresh_expires_at = e.refresh_expires_at;
            }
            // The first revocation says why the session ended.
            SessionEvent::Revoked(e) => {
                self.revoked.get_or_insert(e.reason);
            }
        }
    }

    /// Decides what presenting `presented` means. `next` is the hash of the
    /// replacement token the caller will hand out if the decision is to rotate.
    pub fn refresh(
        &self,
        presented: &SecretHash,
        next: SecretHash,
        now: DateTime<Utc>,
        lifetime: SessionLifetime,
    ) -> Result<RefreshDecision, SessionError> {
        if self.revoked.is_some() {
            return Err(SessionError::Revoked);
        }
        if self.current.matches(presented) {
            let ends_at = self.ends_at(lifetime);
            if now >= ends_at {
                return Err(SessionError::LifetimeOver);
            }
            if now >= self.refresh_expires_at {
                return Err(SessionError::Expired);
            }
            return Ok(RefreshDecision::Rotate(SessionEvent::Rotated(
                RefreshTokenRotated {
                    session_id: self.id,
                    previous_hash: self.current.clone(),
                    refresh_hash: next,
                    refresh_expires_at: (now + lifetime.idle).min(ends_at),
                    rotated_at: now,
                },
            )));
        }
        if self.spent.iter().any(|h| h.matches(presented)) {
            return Ok(RefreshDecision::RevokeForReuse(
                self.revoke(RevocationReason::RefreshTokenReuse, now),
            ));
        }
        Err(SessionError::UnknownToken)
    }

    /// Decides a logout with any token of the family. Logging out of a revoked
    /// session is a no-op (`Ok(None)`): the caller's goal is already met.
    pub fn logout(
        &self,
        presented: &SecretHash,
        now: DateTime<Utc>,
    ) -> Result<Option<SessionEvent>, SessionError> {
        let belongs =
            self.current.matches(presented) || self.spent.iter().any(|h| h.matches(presented));
        if !belongs {
            return Err(SessionError::UnknownToken);
        }
        if self.revoked.is_some() {
            return Ok(None);
        }
        Ok(Some(self.revoke(RevocationReason::Logout, now)))
    }

    /// Decides the end of this session because its user changed their
    /// password elsewhere; `None` if it was already revoked. A session whose
    /// refresh token expired still ends: its last access token may outlive
    /// the refresh token (the two lifetimes are separate settings).
    pub fn end_for_password_change(&self, now: DateTime<Utc>) -> Option<SessionEvent> {
        self.revoked
            .is_none()
            .then(|| self.revoke(RevocationReason::PasswordChanged, now))
    }

    fn revoke(&self, reason: RevocationReason, now: DateTime<Utc>) -> SessionEvent {
        SessionEvent::Revoked(SessionRevoked {
            session_id: self.id,
            user_id: self.user_id,
            account_id: self.account_id,
            reason,
            revoked_at: now,
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    fn ttl() -> Duration {
        Duration::days(30)
    }

    fn lifetime() -> SessionLifetime {
        SessionLifetime {
            idle: ttl(),
            max_lifetime: Duration::days(90),
        }
    }

    /// Given a started session whose first token is `t0`.
    fn given() -> (Vec<SessionEvent>, DateTime<Utc>) {
        let now = Utc::now();
        let started = Session::start(
            SessionId::from_uuid(uuid::Uuid::now_v7()),
            UserId::from_uuid(uuid::Uuid::now_v7()),
            AccountId::from_uuid(uuid::Uuid::now_v7()),
            Scopes::parse(&["keys:read"]).unwrap(),
            SecretHash::of("t0"),
            now,
            lifetime(),
        );
        (vec![started], now)
    }

    fn apply(events: &mut Vec<SessionEvent>, decision: RefreshDecision) {
        match decision {
            RefreshDecision::Rotate(e) | RefreshDecision::RevokeForReuse(e) => events.push(e),
        }
    }

    #[test]
    fn the_current_token_rotates() {
        let (mut events, now) = given();
        let session = Session::fold(&events).unwrap();
        let decision = session
            .refresh(&SecretHash::of("t0"), SecretHash::of("t1"), now, lifetime())
            .unwrap();
        assert!(matches!(decision, RefreshDecision::Rotate(_)));
        apply(&mut events, decision);
        let session = Session::fold(&events).unwrap();
        assert!(matches!(
            session.refresh(&SecretHash::of("t1"), SecretHash::of("t2"), now, lifetime()),
            Ok(RefreshDecision::Rotate(_))
        ));
    }

    #[test]
    fn a_spent_token_revokes_the_family_and_then_nothing_refreshes() {
        let (mut events, now) = given();
        let rotate = Session::fold(&events).unwrap().refresh(
            &SecretHash::of("t0"),
            SecretHash::of("t1"),
            now,
            lifetime(),
        );
        apply(&mut events, rotate.unwrap());
        // t0 again: theft.
        let reuse = Session::fold(&events).unwrap().refresh(
            &SecretHash::of("t0"),
            SecretHash::of("x"),
            now,
            lifetime(),
        );
        let Ok(RefreshDecision::RevokeForReuse(SessionEvent::Revoked(revoked))) = &reuse else {
            panic!("expected revocation, got {reuse:?}")
        };
        assert_eq!(revoked.reason, RevocationReason::RefreshTokenReuse);
        apply(&mut events, reuse.unwrap());
        // Even the newest token of the family is now refused.
        let session = Session::fold(&events).unwrap();
        assert_eq!(
            session.refresh(&SecretHash::of("t1"), SecretHash::of("t2"), now, lifetime()),
            Err(SessionError::Revoked)
        );
    }

    #[test]
    fn expired_and_foreign_tokens_are_refused_without_events() {
        let (events, now) = given();
        let session = Session::fold(&events).unwrap();
        assert_eq!(
            session.refresh(
                &SecretHash::of("t0"),
                SecretHash::of("t1"),
                now + ttl(),
                lifetime()
            ),
            Err(SessionError::Expired)
        );
        assert_eq!(
            session.refresh(
                &SecretHash::of("other"),
                SecretHash::of("t1"),
                now,
                lifetime()
            ),
            Err(SessionError::UnknownToken)
        );
    }

    #[test]
    fn a_session_ends_at_its_maximum_lifetime_however_often_it_refreshes() {
        let (mut events, start) = given();
        let lifetime = SessionLifetime {
            idle: Duration::days(7),
            max_lifetime: Duration::days(30),
        };
        // Refreshed every 6 days: never idle, yet over at day 30.
        let mut now = start;
        let mut token = "t0".to_string();
        for n in 1..=3 {
            now += Duration::days(6);
            let next = format!("t{n}");
            let decision = Session::fold(&events)
                .unwrap()
                .refresh(
                    &SecretHash::of(&token),
                    SecretHash::of(&next),
                    now,
                    lifetime,
                )
                .unwrap();
            let RefreshDecision::Rotate(SessionEvent::Rotated(rotated)) = &decision else {
                panic!("{decision:?}")
            };
            assert_eq!(rotated.refresh_expires_at, now + Duration::days(7));
            apply(&mut events, decision);
            token = next;
        }
        // Day 24: this rotation's token reaches no further than day 30.
        now += Duration::days(6);
        let decision = Session::fold(&events)
            .unwrap()
            .refresh(&SecretHash::of(&token), SecretHash::of("t5"), now, lifetime)
            .unwrap();
        let RefreshDecision::Rotate(SessionEvent::Rotated(rotated)) = &decision else {
            panic!("{decision:?}")
        };
        assert_eq!(rotated.refresh_expires_at, start + Duration::days(30));
        apply(&mut events, decision);
        let session = Session::fold(&events).unwrap();
        assert_eq!(
            session.refresh(
                &SecretHash::of("t5"),
                SecretHash::of("t6"),
                start + Duration::days(30),
                lifetime
            ),
            Err(SessionError::LifetimeOver)
        );
        // Idle for longer than `idle`: the refresh token expired.
        let (events, start) = given();
        let short = SessionLifetime {
            idle: Duration::hours(1),
            max_lifetime: Duration::days(30),
        };
        let mut started = events.clone();
        if let SessionEvent::Started(s) = &mut started[0] {
            s.refresh_expires_at = start + short.idle;
        }
        assert_eq!(
            Session::fold(&started).unwrap().refresh(
                &SecretHash::of("t0"),
                SecretHash::of("t1"),
                start + Duration::hours(2),
                short
            ),
            Err(SessionError::Expired)
        );
        // A lowered setting reaches sessions already running.
        let lowered = SessionLifetime {
            idle: Duration::days(30),
            max_lifetime: Duration::hours(1),
        };
        assert_eq!(
            Session::fold(&events).unwrap().refresh(
                &SecretHash::of("t0"),
                SecretHash::of("t1"),
                start + Duration::hours(1),
                lowered
            ),
            Err(SessionError::LifetimeOver)
        );
    }

    #[test]
    fn logout_revokes_once() {
        let (mut events, now) = given();
        let session = Session::fold(&events).unwrap();
        assert_eq!(
            session.logout(&SecretHash::of("nope"), now),
            Err(SessionError::UnknownToken)
        );
        events.push(session.logout(&SecretHash::of("t0"), now).unwrap().unwrap());
        let session = Session::fold(&events).unwrap();
        assert_eq!(session.revoked, Some(RevocationReason::Logout));
        assert_eq!(session.logout(&SecretHash::of("t0"), now), Ok(None));
    }

    #[test]
    fn a_password_change_ends_live_sessions_only() {
        let (mut events, now) = given();
        let session = Session::fold(&events).unwrap();
        assert!(
            session.end_for_password_change(now + ttl()).is_some(),
            "a session whose refresh token expired may still have a live access token"
        );
        let Some(SessionEvent::Revoked(ended)) = session.end_for_password_change(now) else {
            panic!("a live session ends")
        };
        assert_eq!(ended.reason, RevocationReason::PasswordChanged);
        events.push(SessionEvent::Revoked(ended));
        let session = Session::fold(&events).unwrap();
        assert_eq!(session.end_for_password_change(now), None, "ended once");
    }
}
