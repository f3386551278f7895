//! Authentication of an admin call's bearer credential: a user or SDK
//! access token, or an API key secret.

use gatehouse_domain::apikey::KeyError;
use gatehouse_domain::session::{Session, SessionEvent};
use gatehouse_domain::token::TokenSubject;
use gatehouse_verifier::index::Index;

use crate::error::IssuerError;
use crate::service::{Issuer, Principal};

impl Issuer {
    /// Verifies the bearer credential of an admin call: an access token (user
    /// or SDK) or an API key secret.
    pub async fn authenticate(&self, bearer: Option<&str>) -> Result<Principal, IssuerError> {
        let token = bearer.ok_or(IssuerError::Unauthenticated {
            reason: "CREDENTIAL_MISSING",
        })?;
        // Judged as `Verify` judges it: a mistyped key is BAD_CHECKSUM.
        if self.settings.key_format.looks_like_api_key(token) {
            if !self.settings.key_format.is_api_key_secret(token) {
                return Err(IssuerError::Unauthenticated {
                    reason: "BAD_CHECKSUM",
                });
            }
            return self.authenticate_key(token).await;
        }
        let now = self.now();
        let claims = self
            .keyring
            .verifier(now)
            .verify(token, None, now.timestamp())
            .map_err(|e| IssuerError::Unauthenticated { reason: e.reason() })?;
        let max_lifetime =
            i64::try_from(self.settings.max_user_token_lifetime.as_secs()).unwrap_or(i64::MAX);
        let subject = claims
            .subject(max_lifetime)
            .map_err(|e| IssuerError::Unauthenticated { reason: e.reason() })?;
        let account_id = subject.account();
        // A user token dies with its session (logout, refresh-token reuse) and
        // holds the session's grants; an SDK token its key's.
        let mut session = None;
        let grants = match subject {
            TokenSubject::User {
                session: session_id,
                ..
            } => {
                session = Some(session_id);
                // From the index's head when it has one (a head is dropped
                // when its session is revoked); else from the stream.
                let found = match self.session_head(session_id) {
                    Some((session, _)) => Some(session),
                    None => {
                        let (events, version) = self
                            .load(&session_id.stream(), SessionEvent::decode)
                            .await?;
                        let folded = Session::fold(&events);
                        if let Some(session) = &folded {
                            self.remember_session(session, version);
                        }
                        folded
                    }
                };
                match found {
                    Some(session)
                        if session.revoked.is_none() && session.account_id == account_id =>
                    {
                        session.scopes
                    }
                    _ => {
                        return Err(IssuerError::Unauthenticated {
                            reason: "SESSION_REVOKED",
                        });
                    }
                }
            }
            TokenSubject::Sdk {
                key: key_id,
                secret,
                ..
            } => {
                // An SDK token dies with its key (revoked, expired, its
                // secret rotated away) and never speaks for another account
                // than its key's. Decided on the index, as `Verify` does.
                let now = self.now();
                let decide = |index: &Index| {
                    let (record, grants) = index
                        .key(&key_id)
                        .filter(|(record, _)| record.account_id == account_id)?;
                    // A secret newer than the index knows: it is behind (the
                    // key was rotated on another issuer), not the token wrong.
                    if secret > record.secrets.rotations {
                        return None;
                    }
                    Some(
                        record
                            .secrets
                            .secret_alive(secret, now)
                            .map(|()| grants.clone()),
                    )
                };
                self.decide_in_memory(decide)
                    .await?
                    .unwrap_or(Err(KeyError::WrongSecret))
                    .map_err(|e| IssuerError::Unauthenticated { reason: e.reason() })?
            }
        };
        Ok(Principal {
            account_id,
            subject: claims.sub,
            grants,
            session,
        })
    }
}
