//! Users: an email, a password hash and scopes on one account.
//!
//! Usernames are unique across Gatehouse. The claim is an event in the
//! `username-<sha256(email)>` stream appended with "no stream" as expected
//! version, in the same transaction as the user's creation, so two concurrent
//! sign-ups of one address cannot both win.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain_events;
use crate::email::Email;
use crate::ids::{AccountId, SessionId, UserId};
use crate::scope::Scopes;

#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct UserCreated {
    pub user_id: UserId,
    pub account_id: AccountId,
    pub username: Email,
    /// argon2id PHC string. A hash, never the password.
    pub password_hash: String,
    pub scopes: Scopes,
    pub created_at: DateTime<Utc>,
}

impl std::fmt::Debug for UserCreated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserCreated")
            .field("user_id", &self.user_id)
            .field("account_id", &self.account_id)
            .field("username", &self.username)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// The user proved their old password and chose a new one. Their other
/// sessions end in the same transaction (`SessionRevoked`, `password_changed`).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct PasswordChanged {
    pub user_id: UserId,
    pub account_id: AccountId,
    /// argon2id PHC string of the new password.
    pub password_hash: String,
    pub changed_at: DateTime<Utc>,
}

impl std::fmt::Debug for PasswordChanged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordChanged")
            .field("user_id", &self.user_id)
            .field("account_id", &self.account_id)
            .field("changed_at", &self.changed_at)
            .finish_non_exhaustive()
    }
}

/// A login session of the user began. Appended to the user's stream with
/// its expected version, in the login's transaction, so a login checked
/// against a password that a concurrent change replaced cannot commit, and a
/// password change finds every session to end in the stream it already holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserSessionStarted {
    pub user_id: UserId,
    pub session_id: SessionId,
    pub started_at: DateTime<Utc>,
}

domain_events!(
    /// Events of the `user-<id>` stream.
    UserEvent {
        Created(UserCreated) = "UserCreated.v1",
        PasswordChanged(PasswordChanged) = "UserPasswordChanged.v1",
        SessionStarted(UserSessionStarted) = "UserSessionStarted.v1",
    }
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsernameClaimed {
    pub user_id: UserId,
}

domain_events!(
    /// Events of the `username-<hash>` stream.
    UsernameEvent {
        Claimed(UsernameClaimed) = "UsernameClaimed.v1",
    }
);

/// Why a login attempt failed, as recorded (never the password).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginFailure {
    /// Unknown user or wrong password: recorded alike, as they are answered alike.
    BadCredentials,
    /// Refused by the throttle before the password was checked.
    Throttled,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoginFailed {
    /// Set when the username belongs to a user.
    pub user_id: Option<UserId>,
    pub reason: LoginFailure,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoginSucceeded {
    pub user_id: UserId,
    pub account_id: AccountId,
    pub session_id: crate::ids::SessionId,
    pub at: DateTime<Utc>,
}

domain_events!(
    /// Events of the `login-<hash>` stream: every attempt at one username.
    LoginEvent {
        Succeeded(LoginSucceeded) = "LoginSucceeded.v1",
        Failed(LoginFailed) = "LoginFailed.v1",
    }
);

/// The stream that claims `email` (a hash, so the log's stream ids do not
/// list addresses).
pub fn username_stream(email: &Email) -> String {
    format!("username-{}", hex_sha256(email.as_str()))
}

/// The stream of login attempts at `username` (normalised or not).
pub fn login_stream(username: &str) -> String {
    format!(
        "login-{}",
        &hex_sha256(&username.trim().to_lowercase())[..32]
    )
}

fn hex_sha256(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A user as folded from its stream.
#[derive(Clone, PartialEq)]
pub struct User {
    pub id: UserId,
    pub account_id: AccountId,
    pub username: Email,
    pub password_hash: String,
    pub scopes: Scopes,
    pub created_at: DateTime<Utc>,
    /// Every login session the user began, oldest first.
    pub sessions: Vec<SessionId>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("account_id", &self.account_id)
            .field("username", &self.username)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

impl User {
    /// Records a new login session (the caller has verified the password
    /// against this fold's hash).
    pub fn start_session(&self, session_id: SessionId, now: DateTime<Utc>) -> UserEvent {
        UserEvent::SessionStarted(UserSessionStarted {
            user_id: self.id,
            session_id,
            started_at: now,
        })
    }

    /// Decides a password change; the caller has verified the old password
    /// and hashed the new one.
    pub fn change_password(&self, password_hash: String, now: DateTime<Utc>) -> UserEvent {
        UserEvent::PasswordChanged(PasswordChanged {
            user_id: self.id,
            account_id: self.account_id,
            password_hash,
            changed_at: now,
        })
    }

    pub fn fold<'a>(events: impl IntoIterator<Item = &'a UserEvent>) -> Option<Self> {
        let mut user = None;
        for event in events {
            match event {
                UserEvent::Created(e) => {
                    user = Some(Self {
                        id: e.user_id,
                        account_id: e.account_id,
                        username: e.username.clone(),
                        password_hash: e.password_hash.clone(),
                        scopes: e.scopes.clone(),
                        created_at: e.created_at,
                        sessions: Vec::new(),
                    })
                }
                UserEvent::SessionStarted(e) => {
                    if let Some(user) = user.as_mut() {
                        user.sessions.push(e.session_id);
                    }
                }
                UserEvent::PasswordChanged(e) => {
                    if let Some(user) = user.as_mut() {
                        user.password_hash = e.password_hash.clone();
                    }
                }
            }
        }
        user
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_hide_addresses_and_debug_hides_hashes() {
        let email = Email::parse("ada@example.com").unwrap();
        let stream = username_stream(&email);
        assert!(stream.starts_with("username-") && !stream.contains("ada"));
        assert_eq!(
            login_stream(" ADA@example.com"),
            login_stream("ada@example.com")
        );
        let created = UserCreated {
            user_id: UserId::from_uuid(uuid::Uuid::now_v7()),
            account_id: AccountId::from_uuid(uuid::Uuid::now_v7()),
            username: email,
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            scopes: Scopes::default(),
            created_at: Utc::now(),
        };
        assert!(!format!("{created:?}").contains("argon2id"));
        let user = User::fold([&UserEvent::Created(created)]).unwrap();
        let changed = user.change_password("$argon2id$v=19$new".into(), Utc::now());
        assert!(!format!("{changed:?}").contains("argon2id"));
        let user = User::fold([
            &UserEvent::Created(UserCreated {
                user_id: user.id,
                account_id: user.account_id,
                username: user.username.clone(),
                password_hash: user.password_hash.clone(),
                scopes: Scopes::default(),
                created_at: user.created_at,
            }),
            &changed,
        ])
        .unwrap();
        assert_eq!(
            user.password_hash, "$argon2id$v=19$new",
            "the fold takes the new hash"
        );
    }
}
