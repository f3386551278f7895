//! The issuer's operations, transport-free: each takes parsed input and the
//! caller's context and returns a result or an [`IssuerError`].

use std::sync::Arc;

use chrono::{DateTime, Utc};
use gatehouse_crypto::jwt::{AccessClaims, sign};
use gatehouse_crypto::password::PasswordHasher;
use gatehouse_crypto::random;
use gatehouse_domain::account::{Account, AccountEvent};
use gatehouse_domain::apikey::{
    ApiKey, ApiKeyEvent, SecretIndexEvent, SecretIssued, secret_stream,
};
use gatehouse_domain::catalogue::{self, Catalogue, Definition, Grant, ScopeEvent};
use gatehouse_domain::email::Email;
use gatehouse_domain::ids::{AccountId, KeyId, SessionId, UserId};
use gatehouse_domain::password::{
    check_new_password, check_new_password_field, plausible_login_password,
};
use gatehouse_domain::scope::{self, Scopes};
use gatehouse_domain::secret::{SecretHash, hint};
use gatehouse_domain::session::{
    RefreshDecision, Session, SessionError, SessionEvent, SessionLifetime,
};
use gatehouse_domain::token::TokenSubject;
use gatehouse_domain::user::{
    LoginEvent, LoginFailed, LoginFailure, LoginSucceeded, User, UserCreated, UserEvent,
    UsernameClaimed, UsernameEvent, login_stream, username_stream,
};
use gatehouse_eventstore::{
    EventStore, ExpectedVersion, Metadata, NewEvent, ProjectionRunner, StoreError, StreamId,
};
use gatehouse_projections::{ApiKeys, KeyActivity};
use uuid::Uuid;

use crate::decide::{CONTENDED_ATTEMPTS, Step, decide_and_append, decide_and_append_within};
use crate::error::IssuerError;
use crate::keyring::LiveKeyring;
use crate::settings::IssuerSettings;
use crate::throttle::Throttle;

/// Who is calling and from where, for event metadata and throttling.
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    pub client_address: Option<String>,
    pub request_id: Option<String>,
}

/// A verified bearer of an admin call.
#[derive(Debug, Clone)]
pub struct Principal {
    pub account_id: AccountId,
    /// User id or key id.
    pub subject: String,
    /// The grants as given (`*`, `resource:*`, concrete) — of the key, or of
    /// the user's login session — resolved when checked, not the token's
    /// claim: an owner holds a scope defined after it logged in.
    pub grants: Scopes,
    /// The login session of a user's access token; `None` for API keys and
    /// SDK tokens (which cannot change a password).
    pub session: Option<SessionId>,
}

impl Principal {
    /// Checks that the principal holds the built-in `scope` on `account`.
    /// Another account's credential gets `PERMISSION_DENIED`, exactly like a
    /// missing scope, so the answer does not reveal whether the account exists.
    pub fn require(&self, scope: &str, account: AccountId) -> Result<(), IssuerError> {
        self.require_anywhere(scope)?;
        if self.account_id == account {
            Ok(())
        } else {
            Err(IssuerError::PermissionDenied {
                scope: scope.to_string(),
            })
        }
    }

    /// Checks a built-in scope that is not about one account (`platform:admin`).
    /// Built-in scopes are always live, so no catalogue is needed.
    pub fn require_anywhere(&self, scope: &str) -> Result<(), IssuerError> {
        if scope::covers(&self.grants, scope) {
            Ok(())
        } else {
            Err(IssuerError::PermissionDenied {
                scope: scope.to_string(),
            })
        }
    }
}

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

/// What bootstrap prints, once (`Debug` shows no secret).
#[derive(Clone, serde::Serialize)]
pub struct Bootstrapped {
    pub account_id: String,
    pub user_id: String,
    pub key_id: String,
    pub secret: String,
}

impl std::fmt::Debug for Bootstrapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bootstrapped")
            .field("account_id", &self.account_id)
            .field("user_id", &self.user_id)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// The issuer.
#[derive(Clone)]
pub struct Issuer {
    store: EventStore,
    hasher: PasswordHasher,
    keyring: LiveKeyring,
    throttle: Throttle,
    settings: Arc<IssuerSettings>,
    /// Brought up to date before listings, so a key created a moment ago is listed.
    api_keys: Arc<ProjectionRunner<ApiKeys>>,
    /// Likewise for the activity log.
    key_activity: Arc<ProjectionRunner<KeyActivity>>,
    /// The one reader behind every live activity tail, and their caps.
    activity_hub: Arc<crate::audit::ActivityHub>,
}

fn event(
    parts: (&'static str, serde_json::Value),
    ctx: &CallContext,
    actor: Option<String>,
) -> NewEvent {
    let (event_type, payload) = parts;
    NewEvent::new(event_type, payload).with_metadata(Metadata {
        actor,
        request_id: ctx.request_id.clone(),
        client_address: ctx.client_address.clone(),
        causation_id: None,
    })
}

macro_rules! parts {
    ($e:expr) => {
        ($e.event_type(), $e.payload())
    };
}

fn stream(id: String) -> Result<StreamId, IssuerError> {
    Ok(StreamId::parse(id)?)
}

/// A request's page size: 0 means `default`; otherwise 1 to `max`.
pub(crate) fn page_size(requested: i32, default: i64, max: i64) -> Result<i64, IssuerError> {
    match i64::from(requested) {
        0 => Ok(default),
        n if (1..=max).contains(&n) => Ok(n),
        _ => Err(IssuerError::InvalidArgument(format!(
            "page_size must be between 1 and {max}"
        ))),
    }
}

/// A required text field: absent or empty is `INVALID_ARGUMENT` naming it
/// (never a credential failure: the caller sent a malformed request).
pub fn required<'a>(field: &'static str, value: &'a str) -> Result<&'a str, IssuerError> {
    if value.trim().is_empty() {
        Err(IssuerError::InvalidArgument(format!("{field} is required")))
    } else {
        Ok(value)
    }
}

/// Seconds from `now` until `at` (0 once past).
fn secs_until(at: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
    (at - now).num_seconds().max(0)
}

fn secs(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

impl Issuer {
    pub fn new(
        store: EventStore,
        hasher: PasswordHasher,
        keyring: LiveKeyring,
        settings: IssuerSettings,
    ) -> Self {
        let throttle = Throttle::new(store.clone(), settings.throttle);
        Self {
            api_keys: Arc::new(ProjectionRunner::new(store.clone(), ApiKeys)),
            key_activity: Arc::new(ProjectionRunner::new(store.clone(), KeyActivity)),
            activity_hub: Arc::default(),
            store,
            hasher,
            keyring,
            throttle,
            settings: Arc::new(settings),
        }
    }

    /// The idle and absolute session timeouts of the settings.
    fn session_lifetime(&self) -> SessionLifetime {
        // Ten years at most: settings are clamped far below, and `now + idle`
        // must never overflow.
        let duration = |d| {
            chrono::Duration::from_std(d)
                .unwrap_or(chrono::Duration::MAX)
                .min(chrono::Duration::days(3650))
        };
        SessionLifetime {
            idle: duration(self.settings.refresh_token_ttl),
            max_lifetime: duration(self.settings.session_max_lifetime),
        }
    }

    pub(crate) fn store(&self) -> &EventStore {
        &self.store
    }

    pub(crate) fn api_keys_runner(&self) -> &ProjectionRunner<ApiKeys> {
        &self.api_keys
    }

    pub(crate) fn key_activity_runner(&self) -> &ProjectionRunner<KeyActivity> {
        &self.key_activity
    }

    pub(crate) fn activity_hub(&self) -> &Arc<crate::audit::ActivityHub> {
        &self.activity_hub
    }

    pub fn settings(&self) -> &IssuerSettings {
        &self.settings
    }

    pub fn keyring(&self) -> &LiveKeyring {
        &self.keyring
    }

    /// The published signing keys as JWKS, now.
    pub fn jwks(&self) -> Vec<gatehouse_crypto::keys::PublicJwk> {
        self.keyring.jwks(Utc::now())
    }

    /// The algorithms of the published keys (during a switch, both), for
    /// discovery documents.
    pub fn signing_algorithms(&self) -> Vec<&'static str> {
        let mut algorithms: Vec<&'static str> = self
            .keyring
            .published(Utc::now())
            .iter()
            .map(|k| k.alg.as_str())
            .collect();
        algorithms.sort_unstable();
        algorithms.dedup();
        algorithms
    }

    pub(crate) async fn load<E>(
        &self,
        stream_id: &str,
        decode: impl Fn(&str, &serde_json::Value) -> Result<Option<E>, gatehouse_domain::DomainError>,
    ) -> Result<(Vec<E>, u64), IssuerError> {
        let stream = stream(stream_id.to_string())?;
        let recorded = self.store.read_stream(&stream).await?;
        let version = recorded.last().map_or(0, |e| e.stream_version);
        let mut events = Vec::with_capacity(recorded.len());
        for e in &recorded {
            if let Some(event) = decode(&e.event_type, &e.payload)
                .map_err(|e| IssuerError::Internal(e.to_string()))?
            {
                events.push(event);
            }
        }
        Ok((events, version))
    }

    /// The user of `email` and their stream's version.
    async fn load_user_by_email(&self, email: &Email) -> Result<Option<(User, u64)>, IssuerError> {
        let (claims, _) = self
            .load(&username_stream(email), UsernameEvent::decode)
            .await?;
        let Some(UsernameEvent::Claimed(claim)) = claims.first() else {
            return Ok(None);
        };
        self.load_user(claim.user_id).await
    }

    async fn load_user(&self, id: UserId) -> Result<Option<(User, u64)>, IssuerError> {
        let (events, version) = self.load(&id.stream(), UserEvent::decode).await?;
        Ok(User::fold(&events).map(|user| (user, version)))
    }

    /// The scope catalogue and the `scopes` stream's version, read from the
    /// log itself, so a scope defined a moment ago on any issuer counts.
    pub(crate) async fn catalogue(&self) -> Result<(Catalogue, u64), IssuerError> {
        let (events, version) = self.load(catalogue::STREAM, ScopeEvent::decode).await?;
        Ok((Catalogue::fold(&events), version))
    }

    /// Resolves `grants` against the live catalogue: what a token carries.
    async fn resolve(&self, grants: &Scopes) -> Result<Scopes, IssuerError> {
        Ok(self.catalogue().await?.0.resolve(grants))
    }

    async fn load_account(&self, account: AccountId) -> Result<Option<Account>, IssuerError> {
        let (events, _) = self.load(&account.stream(), AccountEvent::decode).await?;
        Ok(Account::fold(&events))
    }

    async fn account_exists(&self, account: AccountId) -> Result<bool, IssuerError> {
        Ok(self.load_account(account).await?.is_some())
    }

    /// Whether the event log answers and can take a write (for readiness
    /// probes): an issuer whose writer is stuck cannot log in, rotate or revoke.
    pub async fn ready(&self) -> Result<(), IssuerError> {
        self.store.head().await?;
        self.store
            .check_writable(std::time::Duration::from_secs(2))
            .await?;
        Ok(())
    }

    fn sign(&self, claims: &AccessClaims) -> Result<String, IssuerError> {
        let signer = self
            .keyring
            .signer(Utc::now())
            .ok_or_else(|| IssuerError::Internal("no signing key is active".into()))?;
        Ok(sign(claims, &signer)?)
    }

    fn claims(
        &self,
        subject: String,
        account: AccountId,
        scopes: &Scopes,
        session: Option<SessionId>,
        ttl: std::time::Duration,
        now: DateTime<Utc>,
    ) -> AccessClaims {
        AccessClaims {
            iss: self.settings.issuer.clone(),
            sub: subject,
            aud: self.settings.audience.clone(),
            exp: now.timestamp() + secs(ttl),
            iat: now.timestamp(),
            nbf: now.timestamp(),
            jti: Uuid::now_v7().to_string(),
            acc: account.to_string(),
            scope: scopes.to_claim(),
            sid: session.map(|s| s.to_string()),
            ksv: None,
        }
    }

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
        let claims = self
            .keyring
            .verifier(Utc::now())
            .verify(token, None)
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
                let (events, _) = self
                    .load(&session_id.stream(), SessionEvent::decode)
                    .await?;
                match Session::fold(&events) {
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
                // An SDK token dies with its key (revoked, expired) and never
                // speaks for another account than its key's.
                let (events, _) = self.load(&key_id.stream(), ApiKeyEvent::decode).await?;
                let key = ApiKey::fold(&events)
                    .filter(|k| k.account_id == account_id)
                    .ok_or(IssuerError::Unauthenticated {
                        reason: "KEY_UNKNOWN",
                    })?;
                key.secret_alive(secret, Utc::now())
                    .map_err(|e| IssuerError::Unauthenticated { reason: e.reason() })?;
                key.scopes
            }
        };
        Ok(Principal {
            account_id,
            subject: claims.sub,
            grants,
            session,
        })
    }

    /// Creates an account, and its owner if one is given (username and
    /// password together, or neither). Needs `platform:admin`.
    pub async fn create_account(
        &self,
        principal: &Principal,
        name: &str,
        owner_username: Option<&str>,
        owner_password: Option<String>,
        ctx: &CallContext,
    ) -> Result<(Account, Option<User>), IssuerError> {
        principal.require_anywhere(scope::PLATFORM_ADMIN)?;
        let owner = match (owner_username, owner_password) {
            (Some(username), Some(password)) => Some((username, password)),
            (None, None) => None,
            _ => {
                return Err(IssuerError::InvalidArgument(
                    "owner_username and owner_password go together".into(),
                ));
            }
        };
        let now = Utc::now();
        let account_id = AccountId::from_uuid(Uuid::now_v7());
        let created = Account::create(account_id, name, now)?;
        let actor = Some(principal.subject.clone());
        let mut batches = vec![(
            stream(account_id.stream())?,
            ExpectedVersion::NoStream,
            vec![event(parts!(created), ctx, actor.clone())],
        )];
        let mut owner_user = None;
        if let Some((username, password)) = owner {
            // Owners hold everything in their account, resolved when checked.
            let scopes = Scopes::parse(&[scope::ALL])?;
            let (user, user_batches) = self
                .new_user(
                    account_id,
                    username,
                    password,
                    scopes,
                    ctx,
                    actor.clone(),
                    now,
                )
                .await?;
            batches.extend(user_batches);
            owner_user = Some(user);
        }
        self.store
            .append_all(batches)
            .await
            .map_err(username_taken)?;
        let account = Account::fold([&created])
            .ok_or_else(|| IssuerError::Internal("account fold".into()))?;
        Ok((account, owner_user))
    }

    #[allow(clippy::too_many_arguments)]
    async fn new_user(
        &self,
        account_id: AccountId,
        username: &str,
        password: String,
        scopes: Scopes,
        ctx: &CallContext,
        actor: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<(User, Vec<(StreamId, ExpectedVersion, Vec<NewEvent>)>), IssuerError> {
        let email = Email::parse(username)?;
        check_new_password(&password, &[email.as_str()])?;
        let password_hash = self.hasher.hash(password).await?;
        let user_id = UserId::from_uuid(Uuid::now_v7());
        let created = UserEvent::Created(UserCreated {
            user_id,
            account_id,
            username: email.clone(),
            password_hash,
            scopes,
            created_at: now,
        });
        let claimed = UsernameEvent::Claimed(UsernameClaimed { user_id });
        let user =
            User::fold([&created]).ok_or_else(|| IssuerError::Internal("user fold".into()))?;
        Ok((
            user,
            vec![
                (
                    stream(user_id.stream())?,
                    ExpectedVersion::NoStream,
                    vec![event(parts!(created), ctx, actor.clone())],
                ),
                (
                    stream(username_stream(&email))?,
                    ExpectedVersion::NoStream,
                    vec![event(parts!(claimed), ctx, actor)],
                ),
            ],
        ))
    }

    /// Creates a user in `account_id`. Needs `users:write` there; the grants
    /// follow the grant rule.
    pub async fn create_user(
        &self,
        principal: &Principal,
        account_id: AccountId,
        username: &str,
        password: String,
        scopes: Scopes,
        ctx: &CallContext,
    ) -> Result<User, IssuerError> {
        principal.require(scope::USERS_WRITE, account_id)?;
        let (catalogue, _) = self.catalogue().await?;
        catalogue.check_grant(&principal.grants, &scopes, Grant::New)?;
        if !self.account_exists(account_id).await? {
            return Err(IssuerError::NotFound("account"));
        }
        let (user, batches) = self
            .new_user(
                account_id,
                username,
                password,
                scopes,
                ctx,
                Some(principal.subject.clone()),
                Utc::now(),
            )
            .await?;
        self.store
            .append_all(batches)
            .await
            .map_err(username_taken)?;
        Ok(user)
    }

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
    async fn login_uncounted(
        &self,
        username: &str,
        password: String,
        ctx: &CallContext,
    ) -> Result<LoginResult, IssuerError> {
        required("username", username)?;
        required("password", &password)?;
        let now = Utc::now();
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
        let scopes = self.resolve(&user.scopes).await?;
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
                        stream(user.id.stream())?,
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
    async fn record_login_failure(
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
    async fn reserve_attempt(
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
    async fn check_password(
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
        let now = Utc::now();
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
        let (mut user, mut version) = (user, version);
        for _ in 0..8 {
            let changed = user.change_password(new_hash.clone(), now);
            let mut batches = vec![(
                stream(user.id.stream())?,
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
            match self.store.append_all(batches).await {
                Ok(_) => return Ok(()),
                Err(StoreError::WrongExpectedVersion { .. }) => {
                    // A login began a session meanwhile: end it too. A
                    // concurrent change of the password itself wins instead.
                    let (current, current_version) = self
                        .load_user(user.id)
                        .await?
                        .ok_or_else(|| IssuerError::Internal("the user vanished".into()))?;
                    if current.password_hash != user.password_hash {
                        return Err(IssuerError::Conflict);
                    }
                    (user, version) = (current, current_version);
                }
                Err(other) => return Err(other.into()),
            }
        }
        Err(IssuerError::Conflict)
    }

    async fn load_session(&self, token: &str) -> Result<(Session, u64), IssuerError> {
        required("refresh_token", token)?;
        let invalid = IssuerError::InvalidRefreshToken {
            reason: "REFRESH_TOKEN_INVALID",
        };
        let session_id = self
            .settings
            .key_format
            .refresh_token_session(token)
            .ok_or(invalid)?;
        let (events, version) = self
            .load(&session_id.stream(), SessionEvent::decode)
            .await?;
        let session = Session::fold(&events).ok_or(IssuerError::InvalidRefreshToken {
            reason: "REFRESH_TOKEN_INVALID",
        })?;
        Ok((session, version))
    }

    /// Spends a refresh token for a new pair. A spent token revokes the family.
    pub async fn refresh(&self, token: &str, ctx: &CallContext) -> Result<TokenPair, IssuerError> {
        let (answer, _) = decide_and_append(&self.store, || async move {
            let (session, version) = self.load_session(token).await?;
            let now = Utc::now();
            let next = self
                .settings
                .key_format
                .refresh_token(session.id, &random::bytes::<32>()?);
            let decision = session
                .refresh(
                    &SecretHash::of(token),
                    SecretHash::of(&next),
                    now,
                    self.session_lifetime(),
                )
                .map_err(|e| IssuerError::InvalidRefreshToken {
                    reason: match e {
                        SessionError::Revoked => "SESSION_REVOKED",
                        SessionError::Expired => "REFRESH_TOKEN_EXPIRED",
                        SessionError::LifetimeOver => "SESSION_EXPIRED",
                        SessionError::UnknownToken => "REFRESH_TOKEN_INVALID",
                    },
                })?;
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
                    let scopes = self.resolve(&session.scopes).await?;
                    let access_token = self.sign(&self.claims(
                        session.user_id.to_string(),
                        session.account_id,
                        &scopes,
                        Some(session.id),
                        ttl,
                        now,
                    ))?;
                    // Expected version: a concurrent refresh with the same
                    // token loses here, decides again and finds it spent.
                    Ok(Step::Append(
                        vec![(
                            session_stream,
                            ExpectedVersion::Exact(version),
                            vec![event(parts!(rotated), ctx, actor)],
                        )],
                        Ok(TokenPair {
                            access_token,
                            expires_in: secs(ttl),
                            refresh_token: next,
                            refresh_expires_in,
                        }),
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
        answer
    }

    /// Revokes the family of `token`.
    pub async fn logout(&self, token: &str, ctx: &CallContext) -> Result<(), IssuerError> {
        let ((), written) = decide_and_append(&self.store, || async move {
            let (session, version) = self.load_session(token).await?;
            let decision = session
                .logout(&SecretHash::of(token), Utc::now())
                .map_err(|_| IssuerError::InvalidRefreshToken {
                    reason: "REFRESH_TOKEN_INVALID",
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
        if let Some(last) = written.iter().map(|w| w.last_position).max() {
            self.store.wait_for_local_readers(last).await;
        }
        Ok(())
    }

    /// Exchanges an API key for a one-hour access token with the key's scopes.
    pub async fn exchange_sdk_token(
        &self,
        account_id: &str,
        key_id: &str,
        secret: &str,
    ) -> Result<(String, i64), IssuerError> {
        let invalid = || IssuerError::InvalidKeyCredentials;
        // Malformed ids are a malformed request, not a failed credential.
        let account_id = AccountId::parse(required("account_id", account_id)?)?;
        let key_id = KeyId::parse(required("key_id", key_id)?)?;
        required("key_secret", secret)?;
        if !self.settings.key_format.is_api_key_secret(secret) {
            return Err(invalid());
        }
        let (events, _) = self.load(&key_id.stream(), ApiKeyEvent::decode).await?;
        let key = ApiKey::fold(&events).ok_or_else(invalid)?;
        let now = Utc::now();
        let hash = SecretHash::of(secret);
        key.authenticate(&hash, now).map_err(|_| invalid())?;
        if key.account_id != account_id {
            return Err(invalid());
        }
        let ttl = self.settings.sdk_token_ttl;
        let scopes = self.resolve(&key.scopes).await?;
        let mut claims = self.claims(key.id.to_string(), key.account_id, &scopes, None, ttl, now);
        // Bound to the secret it came from: rotated away or revoked, the
        // token dies with it rather than living out its hour.
        claims.ksv = Some(key.secret_version(&hash).ok_or_else(|| {
            IssuerError::Internal("an authenticated secret has no version".into())
        })?);
        let token = self.sign(&claims)?;
        Ok((token, secs(ttl)))
    }

    /// Creates the first account, its owner and an admin key — both holding
    /// `*` and `platform:admin` — and imports `definitions` into the scope
    /// catalogue, once, in one atomic change.
    pub async fn bootstrap(
        &self,
        account_name: &str,
        username: &str,
        password: String,
        definitions: &[Definition],
    ) -> Result<Bootstrapped, IssuerError> {
        let ctx = CallContext::default();
        let now = Utc::now();
        let actor = Some("bootstrap".to_string());
        let account_id = AccountId::from_uuid(Uuid::now_v7());
        let account = Account::create(account_id, account_name, now)?;
        let scopes = Scopes::parse(&[scope::ALL, scope::PLATFORM_ADMIN])?;
        let (catalogue, catalogue_version) = self.catalogue().await?;
        let imported = catalogue.import(definitions, false, now)?;
        let (user, user_batches) = self
            .new_user(
                account_id,
                username,
                password,
                scopes.clone(),
                &ctx,
                actor.clone(),
                now,
            )
            .await?;
        let key_id = KeyId::from_uuid(Uuid::now_v7());
        let secret = self
            .settings
            .key_format
            .api_key_secret(&random::bytes::<24>()?);
        let key = ApiKey::create(
            key_id,
            account_id,
            "bootstrap admin",
            scopes,
            SecretHash::of(&secret),
            hint(&secret),
            None,
            now,
        )?;
        let issued = SecretIndexEvent::Issued(SecretIssued { key_id });
        let marker = NewEvent::new(
            "Bootstrapped.v1",
            serde_json::json!({ "account_id": account_id, "at": now }),
        );
        let mut batches = vec![
            (
                stream("bootstrap".into())?,
                ExpectedVersion::NoStream,
                vec![marker],
            ),
            (
                stream(account_id.stream())?,
                ExpectedVersion::NoStream,
                vec![event(parts!(account), &ctx, actor.clone())],
            ),
            (
                stream(key_id.stream())?,
                ExpectedVersion::NoStream,
                vec![event(parts!(key), &ctx, actor)],
            ),
            (
                stream(secret_stream(&SecretHash::of(&secret)))?,
                ExpectedVersion::NoStream,
                vec![event(parts!(issued), &ctx, None)],
            ),
        ];
        batches.extend(user_batches);
        if !imported.is_empty() {
            batches.push((
                stream(catalogue::STREAM.into())?,
                ExpectedVersion::Exact(catalogue_version),
                imported
                    .iter()
                    .map(|e| event(parts!(e), &ctx, Some("bootstrap".into())))
                    .collect(),
            ));
        }
        match self.store.append_all(batches).await {
            Ok(_) => {}
            Err(StoreError::WrongExpectedVersion { stream, .. }) if stream == "bootstrap" => {
                return Err(IssuerError::FailedPrecondition(
                    "Gatehouse is already bootstrapped; nothing was written".into(),
                ));
            }
            Err(other) => return Err(username_taken(other)),
        }
        Ok(Bootstrapped {
            account_id: account_id.to_string(),
            user_id: user.id.to_string(),
            key_id: key_id.to_string(),
            secret,
        })
    }
}

/// A conflict on a `username-…` claim means the address is taken.
fn username_taken(error: StoreError) -> IssuerError {
    match error {
        StoreError::WrongExpectedVersion { ref stream, .. } if stream.starts_with("username-") => {
            IssuerError::AlreadyExists("a user with this username")
        }
        other => other.into(),
    }
}
