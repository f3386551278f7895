//! Sessions: login (with its throttle), refresh-token rotation with reuse
//! detection, logout and password change.

use chrono::{DateTime, Utc};
use gatehouse_crypto::random;
use gatehouse_domain::account::Account;
use gatehouse_domain::email::Email;
use gatehouse_domain::ids::{SessionId, UserId};
use gatehouse_domain::password::{check_new_password_field, plausible_login_password};
use gatehouse_domain::scope::Scopes;
use gatehouse_domain::secret::SecretHash;
use gatehouse_domain::session::{RefreshDecision, Session, SessionError, SessionEvent};
use gatehouse_domain::user::{
    LoginEvent, LoginFailed, LoginFailure, LoginSucceeded, User, login_stream,
};
use gatehouse_eventstore::{ExpectedVersion, StreamId};
use uuid::Uuid;

use crate::decide::{CONTENDED_ATTEMPTS, Step, decide_and_append, decide_and_append_within};
use crate::error::IssuerError;
use crate::service::{CallContext, Issuer, Principal, event, required, secs, secs_until, stream};

/// Tokens handed out by login and refresh (`Debug` shows no token).
#[derive(Clone)]
pub struct TokenPair {
    pub access_token: String,
    pub expires_in: i64,
    pub refresh_token: String,
    pub refresh_expires_in: i64,
}

impl std::fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenPair")
            .field("expires_in", &self.expires_in)
            .field("refresh_expires_in", &self.refresh_expires_in)
            .finish_non_exhaustive()
    }
}

/// What login returns.
#[derive(Debug, Clone)]
pub struct LoginResult {
    pub tokens: TokenPair,
    pub user: User,
    /// The user's account (its name is part of the answer).
    pub account: Account,
    /// The concrete scopes the user holds now (what the token carries).
    pub scopes: Scopes,
}

impl Issuer {
    /// Logs in (see `login_uncounted`), counting the outcome by result for
    /// whichever transport asked.
    pub async fn login(
        &self,
        username: &str,
        password: String,
        ctx: &CallContext,
    ) -> Result<LoginResult, IssuerError> {
        let result = self.login_uncounted(username, password, ctx).await;
        let outcome = match &result {
            Ok(_) => "success",
            Err(IssuerError::Throttled { .. }) => "throttled",
            Err(IssuerError::BadCredentials) => "bad_credentials",
            Err(_) => "error",
        };
        metrics::counter!("gatehouse_logins_total", "result" => outcome).increment(1);
        result
    }

    /// Password login.
    pub(crate) async fn login_uncounted(
        &self,
        username: &str,
        password: String,
        ctx: &CallContext,
    ) -> Result<LoginResult, IssuerError> {
        required("username", username)?;
        required("password", &password)?;
        let now = self.now();
        let login_stream = stream(login_stream(username))?;
        let attempt = self
            .reserve_attempt(username, &login_stream, None, ctx, now)
            .await?;
        let user = match Email::parse(username) {
            Ok(email) => self.load_user_by_email(&email).await?,
            Err(_) => None,
        };
        // Always run argon2: against the user's hash, or the dummy one.
        let matched = self
            .check_password(
                &login_stream,
                user.as_ref().map(|(u, _)| (u.id, u.password_hash.clone())),
                password,
                ctx,
                now,
            )
            .await;
        let correct = user.is_some() && matches!(matched, Ok(true));
        if let Err(error) = attempt.settle(correct).await {
            // The password was right: clearing the counter is best effort.
            tracing::warn!(%error, "could not clear the login throttle after a success");
        }
        let matched = matched?;
        let (user, user_version) = match (user, matched) {
            (Some(found), true) => found,
            _ => return Err(IssuerError::BadCredentials),
        };
        // Everything that can fail comes before the append: a login the
        // caller never receives must not leave a session in the log.
        let session_id = SessionId::from_uuid(Uuid::now_v7());
        let ttl = self.settings.access_token_ttl;
        let scopes = self.resolve_now(&user.scopes).await?;
        let account = self
            .load_account(user.account_id)
            .await?
            .ok_or_else(|| IssuerError::Internal("the user's account is missing".into()))?;
        let access_token = self.sign(&self.claims(
            user.id.to_string(),
            user.account_id,
            &scopes,
            Some(session_id),
            ttl,
            now,
        ))?;
        let refresh_token = self
            .settings
            .key_format
            .refresh_token(session_id, &random::bytes::<32>()?);
        let started = Session::start(
            session_id,
            user.id,
            user.account_id,
            user.scopes.clone(),
            SecretHash::of(&refresh_token),
            now,
            self.session_lifetime(),
        );
        let refresh_expires_in = match &started {
            SessionEvent::Started(s) => secs_until(s.refresh_expires_at, now),
            _ => 0,
        };
        let succeeded = LoginEvent::Succeeded(LoginSucceeded {
            user_id: user.id,
            account_id: user.account_id,
            session_id,
            at: now,
        });
        let actor = Some(user.id.to_string());
        let user_session = user.start_session(session_id, now);
        // The user stream's expected version ties the session to the hash the
        // password was checked against: a concurrent password change makes
        // this append fail instead of leaving a session it never ended.
        // The version the password was checked at, for the first attempt.
        let checked = &std::sync::Mutex::new(Some(user_version));
        let (user_ref, user_session, started, succeeded) =
            (&user, &user_session, &started, &succeeded);
        let (login_stream, actor) = (&login_stream, &actor);
        let user_stream = stream(user.id.stream())?;
        let _turn = self.turns.take(&user_stream).await;
        let user_stream = &user_stream;
        decide_and_append_within(&self.store, CONTENDED_ATTEMPTS, || async move {
            let user = user_ref;
            let first = checked.lock().ok().and_then(|mut version| version.take());
            let user_version = match first {
                Some(version) => version,
                // Another login of the same user (retry), or a password
                // change (then the checked password is no longer it).
                None => {
                    let (current, version) = self
                        .load_user(user.id)
                        .await?
                        .ok_or_else(|| IssuerError::Internal("the user vanished".into()))?;
                    if current.password_hash != user.password_hash {
                        self.record_login_failure(
                            login_stream,
                            Some(user.id),
                            LoginFailure::BadCredentials,
                            ctx,
                            now,
                        )
                        .await?;
                        return Err(IssuerError::BadCredentials);
                    }
                    version
                }
            };
            Ok(Step::Append(
                vec![
                    (
                        user_stream.clone(),
                        ExpectedVersion::Exact(user_version),
                        vec![event(parts!(user_session), ctx, actor.clone())],
                    ),
                    (
                        stream(session_id.stream())?,
                        ExpectedVersion::NoStream,
                        vec![event(parts!(started), ctx, actor.clone())],
                    ),
                    (
                        login_stream.clone(),
                        ExpectedVersion::Any,
                        vec![event(parts!(succeeded), ctx, actor.clone())],
                    ),
                ],
                (),
            ))
        })
        .await?;
        // Its first refresh here is decided from memory.
        if let Some(session) = Session::fold([started]) {
            self.remember_session(&session, 1);
        }
        Ok(LoginResult {
            tokens: TokenPair {
                access_token,
                expires_in: secs(ttl),
                refresh_token,
                refresh_expires_in,
            },
            account,
            user,
            scopes,
        })
    }

    /// Records a refused password check in the username's login stream (the
    /// audit trail of guesses; the throttle itself counts in its own table).
    pub(crate) async fn record_login_failure(
        &self,
        login_stream: &StreamId,
        user_id: Option<UserId>,
        reason: LoginFailure,
        ctx: &CallContext,
        now: DateTime<Utc>,
    ) -> Result<(), IssuerError> {
        let failed = LoginEvent::Failed(LoginFailed {
            user_id,
            reason,
            at: now,
        });
        self.store
            .append(
                login_stream,
                ExpectedVersion::Any,
                vec![event(parts!(failed), ctx, None)],
            )
            .await?;
        Ok(())
    }

    /// Counts an attempt at `username`'s password with the throttle; a
    /// throttled attempt is refused (429), and the first refusal of each
    /// delay recorded — one event per delay, however many attempts an
    /// attacker makes during it.
    pub(crate) async fn reserve_attempt(
        &self,
        username: &str,
        login_stream: &StreamId,
        user_id: Option<UserId>,
        ctx: &CallContext,
        now: DateTime<Utc>,
    ) -> Result<crate::throttle::Attempt, IssuerError> {
        // Reserved, guarded and audited on a task of its own: a caller that
        // leaves while the reservation commits still gets its attempt
        // refunded (the guard is made, then dropped, there), and the first
        // refusal of a delay is still recorded, so disconnecting at once
        // hides no throttling from the audit log.
        let (issuer, who, login_stream, ctx) = (
            self.clone(),
            username.to_string(),
            login_stream.clone(),
            ctx.clone(),
        );
        tokio::spawn(async move {
            let address = ctx.client_address.as_deref();
            match issuer.throttle.reserve(&who, address, now).await? {
                Ok(()) => Ok(issuer.throttle.attempt(&who, address)),
                Err(refused) => {
                    metrics::counter!("gatehouse_login_throttled_total").increment(1);
                    if refused.first {
                        issuer
                            .record_login_failure(
                                &login_stream,
                                user_id,
                                LoginFailure::Throttled,
                                &ctx,
                                now,
                            )
                            .await?;
                    }
                    Err(IssuerError::Throttled {
                        retry_after: refused.retry_after,
                    })
                }
            }
        })
        .await
        .map_err(|e| IssuerError::Internal(format!("the throttle's task failed: {e}")))?
    }

    /// Runs argon2 on `password` against the user's hash (the dummy hash
    /// when there is no user, so both take the same time) and records a
    /// mismatch in the login stream.
    pub(crate) async fn check_password(
        &self,
        login_stream: &StreamId,
        user: Option<(UserId, String)>,
        password: String,
        ctx: &CallContext,
        now: DateTime<Utc>,
    ) -> Result<bool, IssuerError> {
        let password = if plausible_login_password(&password) {
            password
        } else {
            String::new()
        };
        let (user_id, hash) = user.unzip();
        let matched = self.hasher.verify(password, hash).await?;
        if !matched {
            self.record_login_failure(
                login_stream,
                user_id,
                LoginFailure::BadCredentials,
                ctx,
                now,
            )
            .await?;
        }
        Ok(matched)
    }

    /// Changes the password of the user whose access token `principal` is,
    /// after checking the old one (throttled like a login: a stolen access
    /// token must not become a password oracle), and ends the user's other
    /// live sessions in the same transaction. The caller's session stays.
    pub async fn change_password(
        &self,
        principal: &Principal,
        old_password: String,
        new_password: String,
        ctx: &CallContext,
    ) -> Result<(), IssuerError> {
        let Some(own_session) = principal.session else {
            return Err(IssuerError::UserTokenRequired);
        };
        required("old_password", &old_password)?;
        required("new_password", &new_password)?;
        let user_id =
            UserId::parse(&principal.subject).map_err(|_| IssuerError::Unauthenticated {
                reason: "CREDENTIAL_MALFORMED",
            })?;
        let (user, version) = self
            .load_user(user_id)
            .await?
            .filter(|(u, _)| u.account_id == principal.account_id)
            .ok_or(IssuerError::Unauthenticated {
                reason: "CREDENTIAL_MALFORMED",
            })?;
        let username = user.username.as_str().to_owned();
        // Refused before the old password is tried: no throttle attempt spent.
        check_new_password_field("new_password", &new_password, &[&username])?;
        let login_stream = stream(login_stream(&username))?;
        let now = self.now();
        let attempt = self
            .reserve_attempt(&username, &login_stream, Some(user.id), ctx, now)
            .await?;
        let matched = self
            .check_password(
                &login_stream,
                Some((user.id, user.password_hash.clone())),
                old_password,
                ctx,
                now,
            )
            .await;
        attempt.settle(matches!(matched, Ok(true))).await?;
        let matched = matched?;
        if !matched {
            return Err(IssuerError::WrongPassword);
        }
        let new_hash = self.hasher.hash(new_password).await?;
        let actor = Some(user.id.to_string());
        let (actor, new_hash, original) = (&actor, &new_hash, &user.password_hash);
        let first = &std::sync::Mutex::new(Some((user.clone(), version)));
        let user_stream = stream(user_id.stream())?;
        let _turn = self.turns.take(&user_stream).await;
        let user_stream = &user_stream;
        decide_and_append_within(&self.store, CONTENDED_ATTEMPTS, || async move {
            let taken = first
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            let (user, version) = match taken {
                Some(read) => read,
                // A login began a session meanwhile: end it too. A
                // concurrent change of the password itself wins instead.
                None => {
                    let (current, version) = self
                        .load_user(user_id)
                        .await?
                        .ok_or_else(|| IssuerError::Internal("the user vanished".into()))?;
                    if current.password_hash != *original {
                        return Err(IssuerError::Conflict);
                    }
                    (current, version)
                }
            };
            let changed = user.change_password(new_hash.clone(), now);
            let mut batches = vec![(
                user_stream.clone(),
                // Logins append their session here with the version they
                // read: whichever commits second sees the other.
                ExpectedVersion::Exact(version),
                vec![event(parts!(changed), ctx, actor.clone())],
            )];
            for &session_id in user.sessions.iter().filter(|s| **s != own_session) {
                let (events, _) = self
                    .load(&session_id.stream(), SessionEvent::decode)
                    .await?;
                if let Some(ended) =
                    Session::fold(&events).and_then(|s| s.end_for_password_change(now))
                {
                    batches.push((
                        stream(session_id.stream())?,
                        // Ending a session only ever tightens (like reuse).
                        ExpectedVersion::Any,
                        vec![event(parts!(ended), ctx, actor.clone())],
                    ));
                }
            }
            Ok(Step::Append(batches, ()))
        })
        .await?;
        Ok(())
    }

    /// Session `session_id` as its stream says, at the stream's version;
    /// kept in the index (unless revoked) for its next refresh.
    pub(crate) async fn load_session(
        &self,
        session_id: SessionId,
    ) -> Result<(Session, u64), IssuerError> {
        let (events, version) = self
            .load(&session_id.stream(), SessionEvent::decode)
            .await?;
        let session = Session::fold(&events).ok_or(IssuerError::InvalidRefreshToken {
            reason: "REFRESH_TOKEN_INVALID",
        })?;
        self.remember_session(&session, version);
        Ok((session, version))
    }

    /// Spends a refresh token for a new pair. A spent token revokes the family.
    ///
    /// Decided from memory when this issuer's index holds the session's head
    /// and the token is its current one: one append, expected at the head's
    /// version, and no read. Anything else — no head (a session older than
    /// the snapshot this process started from, or one another issuer began a
    /// moment ago), a token that is not the current one (spent: reuse; or a
    /// stranger's), a lost race — is decided on the session's stream, as
    /// every attempt after the first is.
    pub async fn refresh(&self, token: &str, ctx: &CallContext) -> Result<TokenPair, IssuerError> {
        let (session_id, presented) = self.presented_refresh_token(token)?;
        let first = &std::sync::atomic::AtomicBool::new(true);
        let presented = &presented;
        let (answer, written) = decide_and_append(&self.store, || async move {
            let remembered = first
                .swap(false, std::sync::atomic::Ordering::Relaxed)
                .then(|| self.session_head(session_id))
                .flatten();
            let now = self.now();
            let next = self
                .settings
                .key_format
                .refresh_token(session_id, &random::bytes::<32>()?);
            let next_hash = SecretHash::of(&next);
            let lifetime = self.session_lifetime();
            let from_head = remembered.and_then(|(session, version)| {
                match session.refresh(presented, next_hash.clone(), now, lifetime) {
                    Ok(decision @ RefreshDecision::Rotate(_)) => Some((session, version, decision)),
                    // Not the current token, or refused: the stream says why.
                    _ => None,
                }
            });
            let (session, version, decision) = match from_head {
                Some(decided) => decided,
                None => {
                    let (session, version) = self.load_session(session_id).await?;
                    let decision = session
                        .refresh(presented, next_hash, now, lifetime)
                        .map_err(|e| IssuerError::InvalidRefreshToken {
                            reason: match e {
                                SessionError::Revoked => "SESSION_REVOKED",
                                SessionError::Expired => "REFRESH_TOKEN_EXPIRED",
                                SessionError::LifetimeOver => "SESSION_EXPIRED",
                                SessionError::UnknownToken => "REFRESH_TOKEN_INVALID",
                            },
                        })?;
                    (session, version, decision)
                }
            };
            let session_stream = stream(session.id.stream())?;
            let actor = Some(session.user_id.to_string());
            match decision {
                RefreshDecision::Rotate(rotated) => {
                    let refresh_expires_in = match &rotated {
                        SessionEvent::Rotated(r) => secs_until(r.refresh_expires_at, now),
                        _ => 0,
                    };
                    // Sign first: a rotation that is committed but whose token
                    // could not be signed would make the client's retry look
                    // like reuse and revoke its session.
                    let ttl = self.settings.access_token_ttl;
                    let scopes = self.resolve_now(&session.scopes).await?;
                    let access_token = self.sign(&self.claims(
                        session.user_id.to_string(),
                        session.account_id,
                        &scopes,
                        Some(session.id),
                        ttl,
                        now,
                    ))?;
                    let mut after = session;
                    after.apply(&rotated);
                    // Expected version: a concurrent refresh with the same
                    // token (or a head that is behind) loses here, decides
                    // again on the stream and finds the token spent.
                    Ok(Step::Append(
                        vec![(
                            session_stream,
                            ExpectedVersion::Exact(version),
                            vec![event(parts!(rotated), ctx, actor)],
                        )],
                        Ok((
                            TokenPair {
                                access_token,
                                expires_in: secs(ttl),
                                refresh_token: next,
                                refresh_expires_in,
                            },
                            after,
                        )),
                    ))
                }
                RefreshDecision::RevokeForReuse(revoked) => {
                    tracing::warn!(session = %session.id, "refresh token reuse: revoking the session");
                    // Revocation only ever tightens: no expected version, so
                    // a rotation racing in (the thief refreshing) cannot
                    // cancel it.
                    Ok(Step::Append(
                        vec![(
                            session_stream,
                            ExpectedVersion::Any,
                            vec![event(parts!(revoked), ctx, actor)],
                        )],
                        Err(IssuerError::InvalidRefreshToken {
                            reason: "REFRESH_TOKEN_REUSED",
                        }),
                    ))
                }
            }
        })
        .await?;
        let (tokens, after) = answer?;
        // The next refresh here is decided from memory, before the tail
        // brings this rotation back.
        if let Some(written) = written.first() {
            self.remember_session(&after, written.stream_version);
        }
        Ok(tokens)
    }

    /// The session a refresh (or logout) token names, and the token's hash.
    fn presented_refresh_token(&self, token: &str) -> Result<(SessionId, SecretHash), IssuerError> {
        required("refresh_token", token)?;
        let session_id = self
            .settings
            .key_format
            .refresh_token_session(token)
            .ok_or(IssuerError::InvalidRefreshToken {
                reason: "REFRESH_TOKEN_INVALID",
            })?;
        Ok((session_id, SecretHash::of(token)))
    }

    /// Revokes the family of `token`.
    pub async fn logout(&self, token: &str, ctx: &CallContext) -> Result<(), IssuerError> {
        let (session_id, presented) = self.presented_refresh_token(token)?;
        let presented = &presented;
        let ((), written) = decide_and_append(&self.store, || async move {
            let (session, version) = self.load_session(session_id).await?;
            let decision = session.logout(presented, self.now()).map_err(|_| {
                IssuerError::InvalidRefreshToken {
                    reason: "REFRESH_TOKEN_INVALID",
                }
            })?;
            // A revocation only tightens: no expected version, so a refresh
            // racing in (a thief's, say) cannot make the owner's logout fail.
            let _ = version;
            Ok(match decision {
                Some(revoked) => Step::Append(
                    vec![(
                        stream(session.id.stream())?,
                        ExpectedVersion::Any,
                        vec![event(
                            parts!(revoked),
                            ctx,
                            Some(session.user_id.to_string()),
                        )],
                    )],
                    (),
                ),
                None => Step::Done(()),
            })
        })
        .await?;
        // The session's tokens are refused here before logout returns.
        crate::decide::applied_here(&self.store, &written).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::IssuerError;
    use crate::service::CallContext;
    use crate::testing::issuer;

    fn reason(result: Result<super::TokenPair, IssuerError>) -> &'static str {
        match result {
            Err(IssuerError::InvalidRefreshToken { reason }) => reason,
            other => panic!("{other:?}"),
        }
    }

    /// A refresh of the current token reads no stream (one append at the
    /// head's version); a spent token still revokes the family, decided on
    /// the stream; and a session this issuer's index has no head of (as
    /// after a restart from a snapshot) is read once, then kept.
    #[tokio::test]
    async fn refresh_reads_no_stream_and_a_spent_token_still_revokes_the_family() {
        let dir = tempfile::tempdir().unwrap();
        let issuer = issuer(&dir).await;
        let password = "correct horse battery staple 42".to_string();
        issuer
            .bootstrap("Acme", "owner@example.com", password.clone(), &[])
            .await
            .unwrap();
        let ctx = CallContext::default();
        let login = issuer
            .login("owner@example.com", password.clone(), &ctx)
            .await
            .unwrap();
        let reads = issuer.store().stream_reads();
        let mut token = login.tokens.refresh_token;
        let mut spent = Vec::new();
        for _ in 0..5 {
            let pair = issuer.refresh(&token, &ctx).await.unwrap();
            spent.push(std::mem::replace(&mut token, pair.refresh_token));
            // The user token of the rotated session authenticates from memory too.
            let principal = issuer.authenticate(Some(&pair.access_token)).await.unwrap();
            assert_eq!(principal.account_id, login.user.account_id);
        }
        assert_eq!(
            issuer.store().stream_reads(),
            reads,
            "five refreshes and five user-token authentications read no stream"
        );

        // Reuse: decided on the stream, the family revoked.
        assert_eq!(
            reason(issuer.refresh(&spent[2], &ctx).await),
            "REFRESH_TOKEN_REUSED"
        );
        assert!(issuer.store().stream_reads() > reads);
        assert_eq!(
            reason(issuer.refresh(&token, &ctx).await),
            "SESSION_REVOKED",
            "the newest token of the family is refused after the reuse"
        );
        // A stranger's token naming a live session revokes nothing.
        let other = issuer
            .login("owner@example.com", password, &ctx)
            .await
            .unwrap();
        let session = issuer
            .settings
            .key_format
            .refresh_token_session(&other.tokens.refresh_token)
            .unwrap();
        let forged = issuer.settings.key_format.refresh_token(session, &[7; 32]);
        assert_eq!(
            reason(issuer.refresh(&forged, &ctx).await),
            "REFRESH_TOKEN_INVALID"
        );
        // Forgotten (no head, as after a restart from a snapshot): read once.
        issuer
            .view
            .as_ref()
            .unwrap()
            .write(|index| *index = index.empty_like())
            .unwrap();
        let before = issuer.store().stream_reads();
        let pair = issuer
            .refresh(&other.tokens.refresh_token, &ctx)
            .await
            .unwrap();
        assert_eq!(issuer.store().stream_reads(), before + 1);
        issuer.refresh(&pair.refresh_token, &ctx).await.unwrap();
        assert_eq!(issuer.store().stream_reads(), before + 1, "then kept");
    }
}
